"""A job's inputs: the photo, swatch, mask and each surface's, fetched under the fetch policy (or read from the
job's folder for a console upload), prefetched ahead for the next queued jobs, and kept in the job's folder for
the console."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import metrics
from .attempt import Attempt
from .build import fetch_policy
from .config import Settings
from .jobdir import MASK, SWATCH, JobFolder, extension, surface_stem
from .jobs import Job, JobStore
from .refs import InputRef, RefKind

log = logging.getLogger("appliance.worker")


class JobInputs:
    """Fetches and keeps the inputs of the worker's jobs; `prefetch` is a Prefetcher (appliance/prefetch.py) when
    worker.prefetch_jobs > 0."""

    def __init__(self, settings: Settings, store: JobStore):
        self.settings, self.store = settings, store
        self._policy = fetch_policy(settings)
        self.prefetch = None
        if settings.prefetch_jobs > 0:
            from .fetch import fetch_image
            from .prefetch import Prefetcher

            policy = self._policy
            self.prefetch = Prefetcher(lambda url, deadlines: fetch_image(url, what="prefetch", policy=policy,
                                                                          deadlines=deadlines),
                                       depth=settings.prefetch_jobs, workers=2)

    def fetch(self, attempt: Attempt, ref: InputRef, what: str, keep_as: str | None = None) -> bytes:
        """An input: a file of the job's own folder (an upload reference, put there by the console), else a
        download (remembered under `keep_as`, to be kept in the job's folder for the console)."""
        from .fetch import DownloadError, fetch_image

        if ref.kind is RefKind.URL:
            data = self._prefetched(attempt, ref.value)
            if data is None:
                data = fetch_image(ref.value, what=what, policy=self._policy, deadline=attempt.deadline)
            metrics.DOWNLOAD_BYTES.labels(input=what).inc(len(data))
            if keep_as is not None:
                attempt.kept[keep_as] = data
            return data
        try:
            if ref.file_name is None:
                raise FileNotFoundError(ref.value)
            return JobFolder(self.settings, attempt.job.job_id).file(ref.file_name).read_bytes()
        except OSError:
            raise DownloadError(f"{what}: the uploaded file {ref.value!r} is not in the job's folder "
                                f"(pruned?)") from None

    def surfaces(self, attempt: Attempt) -> list[Any]:
        """The job's extra surfaces with their materials and masks fetched (the same guard as the main inputs;
        swatches kept as swatch-<surface>.<ext>)."""
        from pipeline.surfaces import SurfaceMaterial

        out = []
        for i, raw in enumerate(attempt.job.surfaces or ()):
            name, texture = raw["surface"], InputRef.parse(raw["texture_url"])
            where = f"surfaces[{i}]"
            material = texture.value if texture.is_colour else \
                self.fetch(attempt, texture, f"{where}.texture_url", surface_stem(SWATCH, name))
            mask = self.fetch(attempt, InputRef.parse(raw["mask_url"]), f"{where}.mask_url") \
                if raw.get("mask_url") else None
            out.append(SurfaceMaterial(name, material, raw.get("swatch_width_m"), mask))
        return out

    def prefetch_ahead(self, current: str) -> None:
        """Start downloading the inputs of the next queued jobs (appliance/prefetch.py); best effort."""
        if self.prefetch is None:
            return
        try:
            upcoming = []
            for job_id in self.store.queued_ids()[: self.prefetch.depth]:
                job = self.store.get(job_id)
                if job is not None:
                    upcoming.append((job_id, urls(job)))
            self.prefetch.ahead(upcoming, current)
        except Exception:  # the job store hiccuped: the jobs download their own inputs
            log.exception("prefetch: could not look ahead")

    def _prefetched(self, attempt: Attempt, url: str) -> bytes | None:
        """The file prefetched for this job, waited for within the job's time limit; None: fetch it now."""
        future = None if self.prefetch is None else self.prefetch.take(attempt.job.job_id, url)
        if future is None:
            return None
        try:
            return future.result(timeout=max(0.0, attempt.deadline - time.monotonic()))
        except Exception:  # failed, canceled or still too slow: the ordinary download decides (and says why)
            return None

    def keep(self, job: Job, files: dict[str, bytes]) -> None:
        """Keep what the job used in its folder, for the console (retention prunes it with the job): the photo and
        swatch as downloaded (photo.jpg, swatch.png, ...) and the paint mask (mask.png, white = painted). Best
        effort: a full disk never fails a job."""
        from .fetch import image_kind

        folder = JobFolder(self.settings, job.job_id)
        try:
            for stem, data in files.items():
                kind = "png" if stem.startswith(MASK) else image_kind(data[:16])
                folder.write(f"{stem}.{extension(kind)}", data)
        except (OSError, RuntimeError) as exc:
            log.warning("job %s: could not keep its inputs in %s: %s", job.job_id, folder.path, exc)


def urls(job: Job) -> list[str]:
    """The URL inputs of a job (photo, swatch, mask, and each surface's), the ones a worker downloads."""
    refs = [job.image_url, job.texture_url, job.mask_url]
    for entry in job.surfaces or ():
        refs += [entry.get("texture_url"), entry.get("mask_url")]
    return [r for r in refs if r and InputRef.parse(r).kind is RefKind.URL]
