"""Errors the pipeline raises. Each carries a stable `code` that the job API reports as `error_code`
(appliance.domain.ErrorCode lists them all)."""

from __future__ import annotations

import threading


class PipelineError(Exception):
    """A stage failed, or the pipeline cannot run as asked (reported as `pipeline_error`)."""

    code = "pipeline_error"


class InputError(PipelineError):
    """The photo, swatch, mask or options are unusable (reported as `validation_failed`)."""

    code = "validation_failed"


class ModelMissingError(PipelineError):
    """A model file is not installed; the message names the command that installs it."""


class StageTimeout(PipelineError):
    """A stage ran past its time limit (reported as `timeout`)."""

    code = "timeout"

    def __init__(self, stage: str, seconds: float, *, abandoned: threading.Thread | None = None):
        super().__init__(f"stage '{stage}' exceeded its time limit of {seconds:g} s")
        self.stage = stage
        self.seconds = seconds
        self.abandoned = abandoned  # the stage's thread, still running (a Python thread cannot be killed)

    def stage_finished(self, grace: float) -> bool:
        """Wait up to `grace` seconds for the abandoned stage to return; False if it is still running."""
        if self.abandoned is None:
            return True
        self.abandoned.join(grace)
        return not self.abandoned.is_alive()


class Cancelled(PipelineError):
    """The caller asked to stop; checked between stages (reported as `canceled`)."""

    code = "canceled"
