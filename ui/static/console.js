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

  class MaskEditor {
    constructor(host, photoUrl, maskUrl) {
      this.host = host;
      this.mode = "paint";
      this.size = 40; // brush diameter in screen pixels
      this.undoStack = [];
      this.dirty = false;
      host.classList.add("mask-editor");
      host.innerHTML = "";
      this.photo = document.createElement("img");
      this.photo.alt = "Photo";
      this.photo.draggable = false;
      this.view = document.createElement("canvas");
      this.view.className = "mask-view";
      this.brush = document.createElement("div");
      this.brush.className = "brush";
      host.append(this.photo, this.view, this.brush);
      this.ready = this.load(photoUrl, maskUrl);
    }

    async load(photoUrl, maskUrl) {
      const photo = await loadImage(photoUrl);
      this.photo.src = photo.src;
      const w = (this.width = photo.naturalWidth);
      const h = (this.height = photo.naturalHeight);
      this.view.width = w;
      this.view.height = h;
      this.mask = document.createElement("canvas");
      this.mask.width = w;
      this.mask.height = h;
      this.mctx = this.mask.getContext("2d", { willReadFrequently: true });
      this.original = null;
      if (maskUrl) {
        try {
          const m = await loadImage(maskUrl);
          const tmp = document.createElement("canvas");
          tmp.width = w;
          tmp.height = h;
          const t = tmp.getContext("2d", { willReadFrequently: true });
          t.drawImage(m, 0, 0, w, h);
          const px = t.getImageData(0, 0, w, h);
          const d = px.data;
          for (let i = 0; i < d.length; i += 4) {
            const on = d[i] >= 128;
            d[i] = d[i + 1] = d[i + 2] = 255;
            d[i + 3] = on ? 255 : 0;
          }
          this.mctx.putImageData(px, 0, 0);
          this.original = px;
        } catch (err) {
          console.warn(err);
        }
      }
      this.bind();
      this.redraw();
      this.host.dataset.ready = "1";
      return { width: w, height: h };
    }

    bind() {
      const h = this.host;
      let last = null;
      const point = (e) => {
        const r = this.view.getBoundingClientRect();
        return { x: ((e.clientX - r.left) * this.width) / r.width, y: ((e.clientY - r.top) * this.height) / r.height,
                 sx: e.clientX - r.left, sy: e.clientY - r.top, scale: this.width / r.width };
      };
      h.addEventListener("pointerdown", (e) => {
        if (e.button !== 0) return;
        h.setPointerCapture(e.pointerId);
        this.snapshot();
        last = point(e);
        this.stroke(last, last);
        e.preventDefault();
      });
      h.addEventListener("pointermove", (e) => {
        const p = point(e);
        this.moveBrush(p);
        if (last) {
          this.stroke(last, p);
          last = p;
        }
      });
      const end = () => { last = null; };
      h.addEventListener("pointerup", end);
      h.addEventListener("pointercancel", end);
      h.addEventListener("pointerleave", () => { this.brush.style.display = "none"; });
      h.addEventListener("pointerenter", () => { this.brush.style.display = "block"; });
      h.tabIndex = 0;
      h.addEventListener("keydown", (e) => {
        if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { this.undo(); e.preventDefault(); }
      });
    }

    moveBrush(p) {
      this.brush.style.display = "block";
      this.brush.style.left = p.sx + "px";
      this.brush.style.top = p.sy + "px";
      this.brush.style.width = this.brush.style.height = this.size + "px";
    }

    stroke(a, b) {
      const c = this.mctx;
      c.save();
      c.globalCompositeOperation = this.mode === "erase" ? "destination-out" : "source-over";
      c.strokeStyle = c.fillStyle = "#fff";
      c.lineCap = c.lineJoin = "round";
      c.lineWidth = this.size * a.scale;
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
      this.dirty = true;
      this.redraw();
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
    }

    setMode(mode) {
      this.mode = mode;
      this.host.classList.toggle("erase", mode === "erase");
    }
    setSize(px) { this.size = Math.max(2, Number(px) || 40); this.brush.style.width = this.brush.style.height = this.size + "px"; }
    setOpacity(v) { this.view.style.opacity = String(v); }
    undo() {
      const prev = this.undoStack.pop();
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
    mountMaskEditor(key, hostId, photoUrl, maskUrl) {
      const host = document.getElementById(hostId);
      if (!host) return false;
      const editor = new MaskEditor(host, photoUrl, maskUrl);
      this.editors[key] = editor;
      return editor.ready.then(() => true, (err) => String(err));
    },
  };
})();
