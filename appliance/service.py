"""The job service: the one way jobs are made and stopped, for the HTTP routes and the console alike.

    submit(spec)        store a queued job and ring the queue (QueueFull, IdempotencyConflict, StoreUnavailable)
    replay(spec, key)   the job an Idempotency-Key already made from this request, or None
    refusal(spec)       why the live workers cannot run it (refinement without a refiner), or None
    cancel(job_id)      a queued job ends at once, a running one is flagged
    retry(job)          a new job with the same inputs (the files the old one kept, linked into its folder)
    fix_mask(job, png)  the same, with a corrected paint mask (of the wall, or of one of its surfaces)
    with_surfaces(job, surfaces)  the same photo and wall, with another set of extra surfaces (no re-upload)
    variant(job, materials)       the same photo (and fixed mask) in other materials: {surface: texture}
    cancel_queued()     cancel every waiting job (the console's "cancel all queued")
    retry_failed()      retry every failed job not retried yet (canceled ones are left alone)

All blocking (job store writes, file links): call from a thread pool.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pipeline.errors import InputError
from pipeline.options import RenderOptions
from pipeline.surfaces import Surface, extra_surface_refusal, is_surface, unknown_surface_reason

from .domain import ACTIVE, DEFAULT_WEBHOOK_EVENTS, JobStatus, is_canceled
from .disk import low_space
from .jobdir import MASK, MASK_INPUT, PHOTO, SWATCH, JobFolder, surface_stem
from .jobs import Job, JobStore, QueueFull, StoreUnavailable, WorkerInfo
from .queue import RenderQueue
from .refs import InputRef, RefKind, parse_ref

log = logging.getLogger("appliance.service")

# The request fields a job is made of (and that an Idempotency-Key's request hash covers).
FIELDS = ("image_url", "texture_url", "project_id", "user_id", "mask_url", "options")


@dataclass(frozen=True)
class SurfaceSpec:
    """One extra surface of a job (pipeline/surfaces.py): its material, optional swatch width and mask."""

    surface: str
    texture: InputRef
    swatch_width_m: float | None = None
    mask: InputRef | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SurfaceSpec":
        """From the stored form (or a validated SurfaceRequest's model_dump())."""
        return cls(surface=raw["surface"], texture=InputRef.parse(raw["texture_url"]),
                   swatch_width_m=raw.get("swatch_width_m"), mask=parse_ref(raw.get("mask_url")))

    def to_dict(self) -> dict[str, Any]:
        return {"surface": self.surface, "texture_url": str(self.texture), "swatch_width_m": self.swatch_width_m,
                "mask_url": None if self.mask is None else str(self.mask)}


@dataclass(frozen=True)
class JobSpec:
    """What a job renders: already validated (by the API's request model, or built by the console)."""

    image: InputRef
    texture: InputRef
    mask: InputRef | None = None
    options: RenderOptions = field(default_factory=RenderOptions)
    project_id: str | None = None
    user_id: str | None = None
    surfaces: tuple[SurfaceSpec, ...] = ()  # extra surfaces, in the order the client gave them
    webhook_url: str | None = None  # appliance/webhooks.py delivers these events of the job there
    webhook_events: tuple[str, ...] = ()  # empty: DEFAULT_WEBHOOK_EVENTS when webhook_url is set

    @classmethod
    def from_request(cls, request: Any) -> "JobSpec":
        """From appliance.schemas.RenderRequest."""
        return cls(image=InputRef.parse(request.image_url), texture=InputRef.parse(request.texture_url),
                   mask=parse_ref(request.mask_url), options=request.options or RenderOptions(),
                   project_id=request.project_id, user_id=request.user_id,
                   surfaces=tuple(SurfaceSpec.from_dict(e.model_dump()) for e in request.surfaces or ()),
                   webhook_url=request.webhook_url, webhook_events=tuple(request.webhook_events or ()))

    def refs(self) -> list[InputRef]:
        """Every input reference of the job (photo, texture, mask, and each surface's)."""
        found = [self.image, self.texture] + ([self.mask] if self.mask is not None else [])
        for entry in self.surfaces:
            found += [entry.texture] + ([entry.mask] if entry.mask is not None else [])
        return found

    def fields(self) -> dict[str, Any]:
        """The job row's columns, as stored (`surfaces` None when there are none)."""
        return {"image_url": str(self.image), "texture_url": str(self.texture),
                "mask_url": None if self.mask is None else str(self.mask), "project_id": self.project_id,
                "user_id": self.user_id, "options": self.options.to_dict(),
                "surfaces": [e.to_dict() for e in self.surfaces] or None, "webhook_url": self.webhook_url,
                "webhook_events": None if self.webhook_url is None else
                [str(e) for e in self.webhook_events or DEFAULT_WEBHOOK_EVENTS]}


def job_surfaces(job: Job) -> tuple[SurfaceSpec, ...]:
    return tuple(SurfaceSpec.from_dict(raw) for raw in job.surfaces or ())


def request_hash(fields: dict[str, Any]) -> str:
    # `surfaces` and the webhook count only when given: a request without them hashes as it did before they existed
    keys = FIELDS + tuple(k for k in ("surfaces", "webhook_url", "webhook_events") if fields.get(k))
    canonical = json.dumps({k: fields.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def live_workers(store: JobStore, settings: Any) -> list[WorkerInfo]:
    """Workers whose heartbeat is fresh (they beat every lease/3 s, at most every 5 s)."""
    fresh = max(15.0, settings.lease_seconds)
    now = time.time()
    return [w for w in store.workers() if now - w.heartbeat_at <= fresh]


def has_refiner(store: JobStore, settings: Any) -> bool | None:
    """Whether the live workers can refine: True when one has a refinement model, False when every live worker
    reported its models and none has one, None while none has reported yet (all starting, or none running: the
    worker that claims a job decides). The API's refusal and the console's refinement switch both follow it."""
    reported = [w.info["models"] for w in live_workers(store, settings)
                if w.info and isinstance(w.info.get("models"), dict)]
    if not reported:
        return None
    return any(models.get("refine", "none") != "none" for models in reported)


class AlreadyDerived(Exception):
    """The job already has a derived job of this kind (a bulk retry makes at most one retry per job)."""


class InputsNotShared(InputError, ValueError):
    """The job's inputs are files on this box that the workers (on other machines) cannot read."""


class CancelOutcome(StrEnum):
    CANCELED = "canceled"  # it was queued (or already canceled): failed / canceled now
    STOPPING = "stopping"  # it is running: it stops at the next stage boundary
    FINISHED = "finished"  # it had already ended


@dataclass
class BulkRetry:
    made: list[str] = field(default_factory=list)  # the new jobs' ids
    inputs_gone: int = 0  # failed jobs whose uploaded inputs were pruned
    queue_full: bool = False  # stopped early: the queue filled up


class JobService:
    def __init__(self, settings: Any, store: JobStore, queue: RenderQueue):
        self.settings, self.store, self.queue = settings, store, queue

    def submit(self, spec: JobSpec, *, job_id: str | None = None, idempotency_key: str | None = None,
               made_from: dict[str, Any] | None = None) -> tuple[Job, bool]:
        """Store a queued job and enqueue it. Returns (job, created). Raises QueueFull, IdempotencyConflict."""
        job_id = job_id or str(uuid.uuid4())
        if not self.settings.job_files_shared and any(ref.kind is RefKind.UPLOAD for ref in spec.refs()):
            raise InputsNotShared("files uploaded in the console stay on this box, and workers on other machines "
                                  "cannot read them: set cluster.shared_data_dir = true with paths.data_dir on a "
                                  "folder every machine mounts, or give the inputs as URLs")
        if idempotency_key is not None and (first := self.replay(spec, idempotency_key)) is not None:
            return first, False  # a retry of a job already taken: never refused for today's disk or queue
        if (reason := low_space(self.settings)) is not None:  # refused while it can still be said cleanly
            raise StoreUnavailable(reason)
        if made_from:
            JobFolder(self.settings, job_id).set_origin(made_from)
        fields = spec.fields()
        job, created = self.store.create(job_id=job_id, **fields, idempotency_key=idempotency_key,
                                         request_hash=request_hash(fields) if idempotency_key else None,
                                         queue_depth=self.settings.queue_depth)
        if created:
            try:
                self.queue.enqueue(job.job_id)
            except Exception:  # the job is stored: housekeeping re-sends lost queue messages
                log.exception("job %s: enqueue failed; housekeeping will retry", job.job_id)
        return job, created

    def replay(self, spec: JobSpec, idempotency_key: str) -> Job | None:
        """The job already made with this Idempotency-Key from the same request, or None. Raises
        IdempotencyConflict when the key was used for another request. Checked before any refusal, so that a
        retried POST gets its first job back whatever changed since (disk space, queue, workers, storage)."""
        return self.store.by_idempotency_key(idempotency_key, request_hash(spec.fields()))

    def refusal(self, spec: JobSpec) -> dict[str, str] | None:
        """{field: reason} when no live worker can run the job, else None. Refinement needs a worker whose
        pipeline has a refiner; while no live worker has reported its models yet (all starting), the job is taken
        and the worker that claims it decides (pipeline_error without a refiner)."""
        if not spec.options.enable_refinement:
            return None
        if has_refiner(self.store, self.settings) is False:
            return {"options.enable_refinement": "no running worker has a refinement model (it needs the GPU model "
                                                 "set: `render-appliance models pull --set gpu` on a GPU worker)"}
        return None

    def cancel(self, job_id: str) -> tuple[Job, CancelOutcome] | None:
        before = self.store.get(job_id)
        job = self.store.request_cancel(job_id)
        if job is None:
            return None
        if is_canceled(job.status, job.error_code):
            if before is not None and before.status == JobStatus.QUEUED:  # it ended here (a running one: worker)
                from . import metrics

                metrics.job_finished(job.status, job.error_code, None)
            return job, CancelOutcome.CANCELED
        return job, CancelOutcome.STOPPING if job.status in ACTIVE else CancelOutcome.FINISHED

    def retry(self, job: Job) -> Job:
        return self._derive(job, "retry")

    def cancel_queued(self) -> int:
        """Cancel every job still waiting (running ones are left to finish). Returns how many were canceled."""
        count = 0
        for job_id in self.store.queued_ids():
            found = self.cancel(job_id)
            count += found is not None and found[1] is CancelOutcome.CANCELED
        return count

    def retry_failed(self, limit: int = 500) -> "BulkRetry":
        """Retry each failed job (not canceled) that has no retry yet, oldest first, until the queue is full.
        A job whose uploaded inputs are gone is skipped and counted."""
        outcome = BulkRetry()
        failed = self.store.list_jobs(JobStatus.FAILED, limit=limit, include_canceled=False)
        for job in reversed(failed):
            if any(kind == "retry" for kind, _ in JobFolder(self.settings, job.job_id).derived()):
                continue
            try:
                outcome.made.append(self._derive(job, "retry", once=True).job_id)
            except AlreadyDerived:  # another bulk retry got there first
                continue
            except FileNotFoundError:
                outcome.inputs_gone += 1
            except QueueFull:
                outcome.queue_full = True
                break
        return outcome

    def fix_mask(self, job: Job, mask_png: bytes, surface: str | None = None) -> Job:
        """The caller checked the mask (size, paints something) the way the worker will. `surface`: one of the
        job's extra surfaces (its mask is replaced; the wall's stays), else the wall."""
        if surface in (None, Surface.WALL):
            return self._derive(job, "mask fix", mask_png)
        specs = job_surfaces(job)
        if surface not in {e.surface for e in specs}:
            raise ValueError(f"job {job.job_id[:8]} has no {surface} surface")
        new_id = str(uuid.uuid4())
        folder = JobFolder(self.settings, new_id)
        try:
            name = folder.write(f"{surface_stem(MASK_INPUT, surface)}.png", mask_png).name
            specs = tuple(replace(e, mask=InputRef.upload(name)) if e.surface == surface else e for e in specs)
            return self._derive(job, "mask fix", surfaces=specs, job_id=new_id)
        except BaseException:  # the folder is this call's own: nothing of it may stay behind
            folder.remove()
            raise

    def with_surfaces(self, job: Job, surfaces: Any, uploads: dict[str, bytes] | None = None, *,
                      job_id: str | None = None) -> Job:
        """A new job with the photo, wall and options of `job` and this set of extra surfaces (SurfaceSpec, or
        dicts in the stored form). An "upload:<name>" material or mask is a file of `uploads` ({name: bytes},
        written into the new job's folder), one already in the new job's folder (`job_id`: a folder the console
        filled first, e.g. the test-render draft) or one that `job` kept (linked over); `job`'s own surfaces carry
        their kept files. Raises ValueError (an unknown or repeated surface), FileNotFoundError, QueueFull."""
        specs = tuple(e if isinstance(e, SurfaceSpec) else SurfaceSpec.from_dict(e) for e in surfaces)
        names = [e.surface for e in specs]
        for name in names:
            if reason := extra_surface_refusal(name, wall="the wall's material is the job's own texture"):
                raise ValueError(f"surface {name!r}: {reason}")
            if names.count(name) > 1:
                raise ValueError(f"surface {name!r} is given twice")
        return self._derive(job, "surfaces", surfaces=specs, uploads=uploads, job_id=job_id)

    def variant(self, job: Job, materials: dict[str, InputRef], *, options: dict[str, Any] | None = None,
                uploads: dict[str, bytes] | None = None, widths: dict[str, float | None] | None = None) -> Job:
        """The same photo (and its corrected masks, if it had them) in other materials: `materials` maps a
        surface to its new material ("wall": the job's own texture; another surface: that extra surface's
        material, replaced or added, its own mask kept). `options` overrides some of the job's options (e.g.
        swatch_width_m for a new wall swatch), `widths` an extra surface's swatch width; `uploads` as for
        with_surfaces. Raises ValueError, FileNotFoundError, QueueFull."""
        wall = materials.get(Surface.WALL)
        extra = {name: ref for name, ref in materials.items() if name != Surface.WALL}
        surfaces = None
        if extra:
            for name in extra:
                if not is_surface(name):
                    raise ValueError(f"surface {name!r}: {unknown_surface_reason(name)}")
            before = {e.surface: e for e in job_surfaces(job)}
            kept = [e for e in before.values() if e.surface not in extra]
            changed = [SurfaceSpec(name, ref, (widths or {}).get(name),
                                   before[name].mask if name in before else None) for name, ref in extra.items()]
            surfaces = tuple(kept) + tuple(changed)
        return self._derive(job, "variant", surfaces=surfaces, uploads=uploads, texture=wall, options=options)

    def _derive(self, job: Job, kind: str, mask_png: bytes | None = None,
                surfaces: tuple[SurfaceSpec, ...] | None = None, uploads: dict[str, bytes] | None = None,
                texture: InputRef | None = None, options: dict[str, Any] | None = None,
                job_id: str | None = None, once: bool = False) -> Job:
        """A new job with the inputs of `job`, made from the files it kept. Raises FileNotFoundError when an
        uploaded input is gone, QueueFull, StoreUnavailable; with `once`, AlreadyDerived when `job` already has a
        derived job of this `kind`. On failure the new folder goes only if this call created it: `job_id` may name
        a folder the caller filled (the test-render draft with the operator's uploads), which must survive a
        refusal so that the operator can try again."""
        new_id = job_id or str(uuid.uuid4())
        old, new = JobFolder(self.settings, job.job_id), JobFolder(self.settings, new_id)
        created = not new.path.exists()
        try:
            for name, data in (uploads or {}).items():
                if InputRef.upload(name).file_name is None:
                    raise ValueError(f"not a plain file name: {name!r}")
                new.write(name, data)
            photo = _carry(old, new, InputRef.parse(job.image_url), PHOTO, PHOTO)
            if texture is None:
                texture = _carry(old, new, InputRef.parse(job.texture_url), SWATCH, SWATCH)
            elif texture.kind is RefKind.UPLOAD and not new.file(texture.file_name or ".").is_file():
                texture = _carry(old, new, texture, SWATCH, SWATCH)  # a file the old job kept
            mask_ref = parse_ref(job.mask_url)
            if mask_png is not None:
                mask: InputRef | None = InputRef.upload(new.write(f"{MASK_INPUT}.png", mask_png).name)
            elif mask_ref is None:
                mask = None
            else:  # an uploaded mask is in the folder as given; a downloaded one was kept as mask.png
                kept_as = MASK_INPUT if mask_ref.kind is RefKind.UPLOAD else MASK
                mask = _carry(old, new, mask_ref, kept_as, MASK_INPUT)
            carried = tuple(_carry_surface(old, new, e) for e in (job_surfaces(job) if surfaces is None else surfaces))
            spec = JobSpec(image=photo, texture=texture, mask=mask,
                           options=RenderOptions.from_mapping({**job.options, **(options or {})}),
                           project_id=job.project_id, user_id=job.user_id, surfaces=carried)
            with old.deriving() as derived:  # serialized: the check, the job and its entry as one step
                if once and any(k == kind for k, _ in derived):
                    raise AlreadyDerived(f"job {job.job_id[:8]} already has a {kind}")
                made = self.submit(spec, job_id=new_id, made_from={"kind": kind, "parent": job.job_id})[0]
                derived.append((kind, made.job_id))
        except BaseException:
            if created:
                new.remove()
            raise
        return made


def _carry(old: JobFolder, new: JobFolder, ref: InputRef, stem: str, target_stem: str) -> InputRef:
    """The new job's reference for one input: the file the old job kept (linked into the new folder), else the
    original URL or colour. Where workers cannot read this box's folders, a downloaded input is fetched again."""
    if ref.is_colour or (ref.kind is RefKind.URL and not new.reaches_workers):
        return ref
    source = old.file(ref.file_name) if ref.file_name else old.find(stem)
    if source is None or not source.is_file():
        if ref.kind is RefKind.UPLOAD:
            raise FileNotFoundError(f"the {stem} of job {old.job_id[:8]} is no longer on this box")
        return ref
    return InputRef.upload(new.link_in(source, target_stem))


def _carry_surface(old: JobFolder, new: JobFolder, entry: SurfaceSpec) -> SurfaceSpec:
    """An extra surface's inputs for the new job: a file just uploaded for it, else what the old job kept (as
    downloaded, or as uploaded), else the original URL or colour."""
    def carry(ref: InputRef, kept_as: str, target: str) -> InputRef:
        if ref.file_name and new.file(ref.file_name).is_file():
            return ref
        return _carry(old, new, ref, surface_stem(kept_as, entry.surface), surface_stem(target, entry.surface))

    texture = entry.texture if entry.texture.is_colour else carry(entry.texture, SWATCH, SWATCH)
    mask = None if entry.mask is None else \
        carry(entry.mask, MASK_INPUT if entry.mask.kind is RefKind.UPLOAD else MASK, MASK_INPUT)
    return SurfaceSpec(entry.surface, texture, entry.swatch_width_m, mask)
