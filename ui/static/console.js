/* Render appliance console: the before/after slider and the paint-mask brush. Plain JS, no dependencies. */
(function () {
  "use strict";

  /* ---- before/after slider: any .ba-slider on the page (delegated, so Vue may re-render it freely) ---- */
  function setPos(slider, clientX) {
    const rect = slider.getBoundingClientRect();
    const pct = Math.max(0, Math.min(100, ((clientX - rect.left) / rect.width) * 100));
    setPct(slider, pct);
  }
  function setPct(slider, pct) {
    slider.style.setProperty("--pos", pct.toFixed(2) + "%");
    slider.setAttribute("aria-valuenow", Math.round(pct));
  }
  let dragging = null;
  document.addEventListener("pointerdown", (e) => {
    const slider = e.target.closest && e.target.closest(".ba-slider");
    if (!slider || e.button !== 0) return;
    dragging = slider;
    slider.setPointerCapture && slider.setPointerCapture(e.pointerId);
    setPos(slider, e.clientX);
    e.preventDefault();
  });
  document.addEventListener("pointermove", (e) => { if (dragging) setPos(dragging, e.clientX); });
  document.addEventListener("pointerup", () => { dragging = null; });
  document.addEventListener("pointercancel", () => { dragging = null; });
  document.addEventListener("keydown", (e) => {
    const slider = document.activeElement;
    if (!slider || !slider.classList || !slider.classList.contains("ba-slider")) return;
    const now = parseFloat(slider.getAttribute("aria-valuenow") || "50");
    const step = e.shiftKey ? 10 : 2;
    if (e.key === "ArrowLeft") setPct(slider, Math.max(0, now - step));
    else if (e.key === "ArrowRight") setPct(slider, Math.min(100, now + step));
    else if (e.key === "Home") setPct(slider, 0);
    else if (e.key === "End") setPct(slider, 100);
    else return;
    e.preventDefault();
  });

  /* ---- zoom and pan over one picture (the result's full-screen view): wheel or +/- buttons, drag to pan,
     double-click toggles 1x / 3x. The transform is on the image; data-zoom tells the tests the level. ---- */
  function zoomable(host) {
    const img = () => host.querySelector("img") || host;  // the picture may be swapped (render / photo)
    if (host.dataset.zoomable) return false;
    host.dataset.zoomable = "1";
    let z = 1, x = 0, y = 0, from = null;
    const apply = () => {
      img().style.transform = `translate(${x}px, ${y}px) scale(${z})`;
      host.dataset.zoom = z.toFixed(2);
    };
    const at = (level, cx, cy) => {
      const nz = Math.max(1, Math.min(10, level));
      x = cx - ((cx - x) * nz) / z;
      y = cy - ((cy - y) * nz) / z;
      z = nz;
      if (z === 1) x = y = 0;
      apply();
    };
    // a client point in the image's own (untransformed) frame: its layout box is the on-screen one minus the pan
    const local = (cx, cy) => { const r = img().getBoundingClientRect(); return [cx - (r.left - x), cy - (r.top - y)]; };
    const centre = () => { const r = host.getBoundingClientRect(); return local(r.left + r.width / 2, r.top + r.height / 2); };
    host.addEventListener("wheel", (e) => {
      e.preventDefault();
      at(z * Math.exp(-e.deltaY * 0.0015), ...local(e.clientX, e.clientY));
    }, { passive: false });
    host.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      from = { x: e.clientX - x, y: e.clientY - y };
      host.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    host.addEventListener("pointermove", (e) => { if (from) { x = e.clientX - from.x; y = e.clientY - from.y; apply(); } });
    host.addEventListener("pointerup", () => { from = null; });
    host.addEventListener("dblclick", (e) => at(z > 1 ? 1 : 3, ...local(e.clientX, e.clientY)));
    host.zoomBy = (f) => at(z * f, ...centre());
    host.zoomReset = () => { z = 1; x = y = 0; apply(); };
    apply();
    return true;
  }

  /* ---- a short two-note chime (Web Audio; silent where the browser blocks sound before a click) ---- */
  function chime() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      const ctx = new Ctx();
      [880, 1320].forEach((freq, i) => {
        const osc = ctx.createOscillator(), gain = ctx.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, ctx.currentTime + i * 0.16);
        gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + i * 0.16 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + i * 0.16 + 0.3);
        osc.connect(gain).connect(ctx.destination);
        osc.start(ctx.currentTime + i * 0.16);
        osc.stop(ctx.currentTime + i * 0.16 + 0.32);
      });
      window.__chimes = (window.__chimes || 0) + 1;
    } catch (err) { /* no sound is not an error */ }
  }

  /* ---- paint-mask editor ---- */
  const TINT = "rgba(255, 64, 129, 1)";
  const MAX_UNDO = 20;

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("could not load " + url));
      img.src = url;
    });
  }

  /* A mask image (white or opaque = on) as a canvas whose alpha is the mask: what the editor composites. */
  async function alphaMask(url, w, h) {
    const img = await loadImage(url);
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const t = c.getContext("2d", { willReadFrequently: true });
    t.drawImage(img, 0, 0, w, h);
    const px = t.getImageData(0, 0, w, h);
    const d = px.data;
    for (let i = 0; i < d.length; i += 4) {
      const on = d[i] >= 128 && d[i + 3] >= 128;
      d[i] = d[i + 1] = d[i + 2] = 255;
      d[i + 3] = on ? 255 : 0;
    }
    t.putImageData(px, 0, 0);
    return c;
  }

  /* The paint-mask editor. Tools: brush, lasso (drag a closed outline), polygon (click corners; double-click,
     Enter or a click on the first corner closes it), snap (a click or rough stroke grows into the region the
     photo's edges bound: computed by the server), and whole house parts. Each tool adds (paint) or removes
     (erase). Wheel zooms at the pointer; drag with the middle button, or with Space held, pans. Every change
     is one undo step (Ctrl+Z). */
  class MaskEditor {
    constructor(host, photoUrl, maskUrl, snapUrl) {
      this.host = host;
      this.mode = "paint";
      this.tool = "brush";
      this.size = 40; // brush diameter in screen pixels
      this.zoom = 1;
      this.pan = { x: 0, y: 0 };
      this.undoStack = [];
      this.dirty = false;
      this.snapUrl = snapUrl || null;
      this.points = []; // the lasso's or polygon's outline so far (photo pixels)
      this.busy = 0;
      host.classList.add("mask-editor");
      host.innerHTML = "";
      this.stage = document.createElement("div");
      this.stage.className = "mask-stage";
      this.photo = document.createElement("img");
      this.photo.alt = "Photo";
      this.photo.draggable = false;
      this.view = document.createElement("canvas");
      this.view.className = "mask-view";
      this.guide = document.createElement("canvas");
      this.guide.className = "mask-guide";
      this.brush = document.createElement("div");
      this.brush.className = "brush";
      this.stage.append(this.photo, this.view, this.guide);
      host.append(this.stage, this.brush);
      this.ready = this.load(photoUrl, maskUrl);
    }

    async load(photoUrl, maskUrl) {
      const photo = await loadImage(photoUrl);
      this.photo.src = photo.src;
      const w = (this.width = photo.naturalWidth);
      const h = (this.height = photo.naturalHeight);
      this.host.style.setProperty("--aspect", String(w / h)); // as large as the window allows, never cut off
      for (const c of [this.view, this.guide]) { c.width = w; c.height = h; }
      this.mask = document.createElement("canvas");
      this.mask.width = w;
      this.mask.height = h;
      this.mctx = this.mask.getContext("2d", { willReadFrequently: true });
      this.original = null;
      if (maskUrl) {
        try {
          this.mctx.drawImage(await alphaMask(maskUrl, w, h), 0, 0);
          this.original = this.mctx.getImageData(0, 0, w, h);
        } catch (err) {
          console.warn(err);
        }
      }
      this.bind();
      this.redraw();
      this.host.dataset.ready = "1";
      return { width: w, height: h };
    }

    point(e) {
      const r = this.view.getBoundingClientRect();
      const hr = this.host.getBoundingClientRect();
      return { x: ((e.clientX - r.left) * this.width) / r.width, y: ((e.clientY - r.top) * this.height) / r.height,
               sx: e.clientX - hr.left, sy: e.clientY - hr.top, scale: this.width / r.width };
    }

    bind() {
      const h = this.host;
      let last = null;
      let panFrom = null;
      let space = false;
      h.addEventListener("pointerdown", (e) => {
        if (e.button === 1 || (e.button === 0 && space)) {
          panFrom = { x: e.clientX - this.pan.x, y: e.clientY - this.pan.y };
          h.setPointerCapture(e.pointerId);
          e.preventDefault();
          return;
        }
        if (e.button !== 0 || this.busy) return;
        const p = this.point(e);
        e.preventDefault();
        h.focus();
        if (this.tool === "polygon") return this.polygonClick(p, e.detail);
        h.setPointerCapture(e.pointerId);
        last = p;
        if (this.tool === "brush") {
          this.snapshot();
          this.stroke(p, p);
        } else if (this.tool === "lasso") {
          this.points = [p];
        } else if (this.tool === "snap") {
          this.seeds = document.createElement("canvas");
          this.seeds.width = this.width;
          this.seeds.height = this.height;
          this.stroke(p, p, this.seeds.getContext("2d"));
        }
        this.drawGuide(p);
      });
      h.addEventListener("pointermove", (e) => {
        if (panFrom) {
          this.pan = { x: e.clientX - panFrom.x, y: e.clientY - panFrom.y };
          return this.applyView();
        }
        const p = this.point(e);
        this.moveBrush(p);
        if (last && this.tool === "brush") this.stroke(last, p);
        else if (last && this.tool === "lasso") this.points.push(p);
        else if (last && this.tool === "snap") this.stroke(last, p, this.seeds.getContext("2d"));
        if (last) last = p;
        this.drawGuide(p);
      });
      const end = () => {
        panFrom = null;
        if (!last) return;
        last = null;
        if (this.tool === "lasso" && this.points.length > 2) this.fillOutline(this.points);
        if (this.tool === "lasso") this.points = [];
        if (this.tool === "snap" && this.seeds) this.snapFill(this.seeds);
        this.drawGuide(null);
      };
      h.addEventListener("pointerup", end);
      h.addEventListener("pointercancel", end);
      h.addEventListener("pointerleave", () => { this.brush.style.display = "none"; });
      h.addEventListener("pointerenter", () => { this.brush.style.display = this.tool === "brush" ? "block" : "none"; });
      h.addEventListener("wheel", (e) => {
        e.preventDefault();
        const hr = h.getBoundingClientRect();
        this.zoomAt(this.zoom * Math.exp(-e.deltaY * 0.0015), e.clientX - hr.left, e.clientY - hr.top);
      }, { passive: false });
      h.tabIndex = 0;
      h.addEventListener("keydown", (e) => {
        if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { this.undo(); e.preventDefault(); }
        else if (e.key === " ") { space = true; h.classList.add("panning"); e.preventDefault(); }
        else if (e.key === "Enter" && this.tool === "polygon") { this.closePolygon(); e.preventDefault(); }
        else if (e.key === "Escape") { this.points = []; this.drawGuide(null); }
        else if (e.key === "+" || e.key === "=") this.zoomBy(1.25);
        else if (e.key === "-") this.zoomBy(0.8);
        else if (e.key === "0") this.fit();
      });
      h.addEventListener("keyup", (e) => { if (e.key === " ") { space = false; h.classList.remove("panning"); } });
    }

    /* --- view: zoom and pan (a CSS transform of the stage; coordinates come from its on-screen box) --- */
    applyView() {
      this.stage.style.transform = `translate(${this.pan.x}px, ${this.pan.y}px) scale(${this.zoom})`;
      this.host.dataset.zoom = this.zoom.toFixed(2);
      this.host.dispatchEvent(new CustomEvent("zoomchange", { detail: this.zoom }));
    }
    zoomAt(level, cx, cy) {
      const z = Math.max(1, Math.min(12, level));
      // keep the photo point under (cx, cy) where it is
      this.pan.x = cx - ((cx - this.pan.x) * z) / this.zoom;
      this.pan.y = cy - ((cy - this.pan.y) * z) / this.zoom;
      this.zoom = z;
      if (z === 1) this.pan = { x: 0, y: 0 };
      this.applyView();
    }
    zoomBy(factor) {
      const r = this.host.getBoundingClientRect();
      this.zoomAt(this.zoom * factor, r.width / 2, r.height / 2);
    }
    fit() { this.zoom = 1; this.pan = { x: 0, y: 0 }; this.applyView(); }

    moveBrush(p) {
      this.brush.style.display = this.tool === "brush" ? "block" : "none";
      this.brush.style.left = p.sx + "px";
      this.brush.style.top = p.sy + "px";
      this.brush.style.width = this.brush.style.height = this.size + "px";
    }

    /* --- drawing --- */
    stroke(a, b, ctx) {
      const c = ctx || this.mctx;
      c.save();
      c.globalCompositeOperation = !ctx && this.mode === "erase" ? "destination-out" : "source-over";
      c.strokeStyle = c.fillStyle = "#fff";
      c.lineCap = c.lineJoin = "round";
      c.lineWidth = (ctx ? Math.max(6, this.size / 2) : this.size) * a.scale;
      c.beginPath();
      if (a.x === b.x && a.y === b.y) {
        c.arc(a.x, a.y, c.lineWidth / 2, 0, Math.PI * 2);
        c.fill();
      } else {
        c.moveTo(a.x, a.y);
        c.lineTo(b.x, b.y);
        c.stroke();
      }
      c.restore();
      if (!ctx) { this.dirty = true; this.redraw(); }
    }

    /* Paint (or erase) a canvas whose alpha is the region: one undo step. */
    apply(region) {
      this.snapshot();
      const c = this.mctx;
      c.save();
      c.globalCompositeOperation = this.mode === "erase" ? "destination-out" : "source-over";
      c.drawImage(region, 0, 0, this.width, this.height);
      c.restore();
      this.dirty = true;
      this.redraw();
    }

    fillOutline(points) {
      const region = document.createElement("canvas");
      region.width = this.width;
      region.height = this.height;
      const c = region.getContext("2d");
      c.fillStyle = "#fff";
      c.beginPath();
      c.moveTo(points[0].x, points[0].y);
      for (const p of points.slice(1)) c.lineTo(p.x, p.y);
      c.closePath();
      c.fill();
      this.apply(region);
    }

    polygonClick(p, clicks) {
      const first = this.points[0];
      const near = first && Math.hypot((p.x - first.x) / p.scale, (p.y - first.y) / p.scale) < 10;
      if (clicks >= 2 || (near && this.points.length > 2)) return this.closePolygon();
      this.points.push(p);
      this.drawGuide(p);
    }
    closePolygon() {
      if (this.points.length > 2) this.fillOutline(this.points);
      this.points = [];
      this.drawGuide(null);
    }

    drawGuide(cursor) {
      const g = this.guide.getContext("2d");
      g.clearRect(0, 0, this.width, this.height);
      const scale = cursor ? cursor.scale : this.width / this.view.getBoundingClientRect().width;
      if (this.tool === "snap" && this.seeds) {
        g.globalAlpha = 0.7;
        g.drawImage(this.seeds, 0, 0);
        g.globalCompositeOperation = "source-in";
        g.fillStyle = "#2f6fde";
        g.fillRect(0, 0, this.width, this.height);
        g.globalCompositeOperation = "source-over";
        g.globalAlpha = 1;
      }
      if (!this.points.length) return;
      g.lineWidth = 2 * scale;
      g.strokeStyle = "#fff";
      g.setLineDash([6 * scale, 4 * scale]);
      g.beginPath();
      g.moveTo(this.points[0].x, this.points[0].y);
      for (const p of this.points.slice(1)) g.lineTo(p.x, p.y);
      if (cursor && this.tool === "polygon") g.lineTo(cursor.x, cursor.y);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = "#2f6fde";
      for (const p of this.tool === "polygon" ? this.points : []) {
        g.beginPath();
        g.arc(p.x, p.y, 4 * scale, 0, Math.PI * 2);
        g.fill();
      }
    }

    /* The snap tool: the stroke goes to the server, which answers the region the photo's edges bound. */
    async snapFill(seeds) {
      if (!this.snapUrl) return;
      this.busy += 1;
      this.host.classList.add("busy");
      try {
        const blob = await new Promise((resolve) => seeds.toBlob(resolve, "image/png"));
        const r = await fetch(this.snapUrl, { method: "POST", body: blob, credentials: "same-origin",
                                              headers: { "Content-Type": "image/png" } });
        if (!r.ok) throw new Error("snap: HTTP " + r.status);
        const url = URL.createObjectURL(await r.blob());
        try { this.apply(await alphaMask(url, this.width, this.height)); } finally { URL.revokeObjectURL(url); }
        this.host.dataset.snaps = String(Number(this.host.dataset.snaps || 0) + 1);
      } catch (err) {
        console.warn(err);
        this.host.dataset.snapError = String(err);
      } finally {
        this.seeds = null;
        this.busy -= 1;
        this.host.classList.remove("busy");
        this.drawGuide(null);
      }
    }

    /* A whole house part (the parser's mask of it) added to or removed from the paint mask. */
    async part(url, mode) {
      const region = await alphaMask(url, this.width, this.height);
      const keep = this.mode;
      this.mode = mode;
      try { this.apply(region); } finally { this.mode = keep; }
      return true;
    }

    redraw() {
      if (this.pending) return;
      this.pending = requestAnimationFrame(() => {
        this.pending = null;
        const v = this.view.getContext("2d");
        v.clearRect(0, 0, this.width, this.height);
        v.globalCompositeOperation = "source-over";
        v.drawImage(this.mask, 0, 0);
        v.globalCompositeOperation = "source-in";
        v.fillStyle = TINT;
        v.fillRect(0, 0, this.width, this.height);
        v.globalCompositeOperation = "source-over";
      });
    }

    snapshot() {
      this.undoStack.push(this.mctx.getImageData(0, 0, this.width, this.height));
      if (this.undoStack.length > MAX_UNDO) this.undoStack.shift();
      this.host.dataset.undo = String(this.undoStack.length);
    }

    setMode(mode) {
      this.mode = mode;
      this.host.classList.toggle("erase", mode === "erase");
    }
    setTool(tool) {
      this.tool = tool;
      this.points = [];
      this.drawGuide(null);
      this.host.dataset.tool = tool;
    }
    setSize(px) { this.size = Math.max(2, Number(px) || 40); this.brush.style.width = this.brush.style.height = this.size + "px"; }
    setOpacity(v) { this.view.style.opacity = String(v); }
    undo() {
      const prev = this.undoStack.pop();
      this.host.dataset.undo = String(this.undoStack.length);
      if (prev) { this.mctx.putImageData(prev, 0, 0); this.redraw(); }
    }
    clear() { this.snapshot(); this.mctx.clearRect(0, 0, this.width, this.height); this.dirty = true; this.redraw(); }
    fill() { this.snapshot(); this.mctx.fillStyle = "#fff"; this.mctx.fillRect(0, 0, this.width, this.height); this.dirty = true; this.redraw(); }
    restore() {
      this.snapshot();
      this.mctx.clearRect(0, 0, this.width, this.height);
      if (this.original) this.mctx.putImageData(this.original, 0, 0);
      this.dirty = false;
      this.redraw();
    }

    /* Whether the mask differs from the one the page loaded (edits a surface switch would drop). */
    changed() {
      const now = this.mctx.getImageData(0, 0, this.width, this.height).data;
      const was = this.original ? this.original.data : null;
      for (let i = 3; i < now.length; i += 4) if ((now[i] >= 128) !== (was !== null && was[i] >= 128)) return true;
      return false;
    }

    paintedFraction() {
      const d = this.mctx.getImageData(0, 0, this.width, this.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) n++;
      return n / (this.width * this.height);
    }

    /* The mask as the API wants it: a PNG of the photo's size, white = paint, black = keep. */
    toBlob() {
      const out = document.createElement("canvas");
      out.width = this.width;
      out.height = this.height;
      const o = out.getContext("2d");
      o.fillStyle = "#000";
      o.fillRect(0, 0, this.width, this.height);
      o.drawImage(this.mask, 0, 0);
      return new Promise((resolve) => out.toBlob(resolve, "image/png"));
    }

    async submit(url) {
      const blob = await this.toBlob();
      const r = await fetch(url, { method: "POST", body: blob, credentials: "same-origin",
                                   headers: { "Content-Type": "image/png" } });
      let body = {};
      try { body = await r.json(); } catch (err) { body = { message: "HTTP " + r.status }; }
      return { status: r.status, body };
    }
  }

  window.RenderConsole = {
    editors: {},
    chime,
    zoomable(sel) { const el = document.querySelector(sel); return el ? zoomable(el) : false; },
    zoomBy(sel, f) { const el = document.querySelector(sel); if (el && el.zoomBy) el.zoomBy(f); },
    zoomReset(sel) { const el = document.querySelector(sel); if (el && el.zoomReset) el.zoomReset(); },
    mountMaskEditor(key, hostId, photoUrl, maskUrl, snapUrl) {
      const host = document.getElementById(hostId);
      if (!host) return false;
      const editor = new MaskEditor(host, photoUrl, maskUrl, snapUrl);
      this.editors[key] = editor;
      return editor.ready.then(() => true, (err) => String(err));
    },
  };
})();
