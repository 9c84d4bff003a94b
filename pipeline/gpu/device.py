"""Where the GPU model set runs, in which precision, and what happens when the GPU runs out of memory.

* `choose_device(requested)`: CUDA when present (bf16 where the GPU supports it, else fp16), CPU in float32
  otherwise or when `AI_FORCE_CPU` is set (1 / true / yes / on).
* `DeviceChoice.run(stage)`: the context every GPU forward pass runs in: one pass at a time per device (a lock, so
  a stage abandoned after a time-out cannot overlap the next job's), inference mode, and on failure the device's
  cached memory is released; an out-of-memory error becomes a `PipelineError` that says what happened.
* Small tensor helpers shared by the backends: image -> normalised tensor, processor settings from the model folder.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import PipelineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def force_cpu() -> bool:
    return os.environ.get("AI_FORCE_CPU", "").strip().lower() in ("1", "true", "yes", "on")


def device_lock(device: torch.device) -> threading.Lock:
    """One lock per device: the GPU runs one model pass at a time, whoever asks."""
    key = str(device)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: torch.device) -> None:
    """Give cached blocks back after a failure (the tensors of the failed pass are garbage by now)."""
    gc.collect()
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype
    reason: str = ""
    lock: threading.Lock = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.lock is None:
            object.__setattr__(self, "lock", device_lock(self.device))

    @property
    def label(self) -> str:
        """e.g. 'cuda:0 bf16', 'cpu fp32' (goes into backend names, so job results say where a stage ran)."""
        short = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, str(self.dtype))
        return f"{self.device} {short}"

    @contextlib.contextmanager
    def run(self, stage: str) -> Iterator[None]:
        """Serialise, no autograd, and turn failures into clear errors with the memory released."""
        with self.lock:
            try:
                with torch.inference_mode():
                    yield
            except BaseException as exc:
                oom = is_oom(exc)
                release_memory(self.device)
                if oom:
                    raise PipelineError(out_of_memory_message(stage, self.device)) from exc
                raise


def out_of_memory_message(stage: str, device: torch.device) -> str:
    where = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            free, total = torch.cuda.mem_get_info(device)
            where += f" ({(total - free) / 2**30:.1f} of {total / 2**30:.1f} GiB in use)"
        except RuntimeError:
            pass
    return (f"out of memory in stage '{stage}' on {where}; the GPU memory of this job was released. Render a smaller "
            f"photo, render without refinement, or check that no other process uses this GPU (one job per GPU)")


def choose_device(requested: str | torch.device | None = None) -> DeviceChoice:
    """`requested`: None (auto), 'cpu', 'cuda', 'cuda:N'. AI_FORCE_CPU wins over everything."""
    if force_cpu():
        return DeviceChoice(torch.device("cpu"), torch.float32, "AI_FORCE_CPU is set")
    if requested is not None and torch.device(requested).type == "cpu":
        return DeviceChoice(torch.device("cpu"), torch.float32, "requested")
    if not torch.cuda.is_available():
        if requested is not None:
            raise PipelineError(f"device {requested} was requested but CUDA is not available "
                                f"(torch {torch.__version__}); set AI_FORCE_CPU=1 to run the GPU models on the CPU")
        return DeviceChoice(torch.device("cpu"), torch.float32, "no CUDA device")
    device = torch.device(requested if requested is not None else "cuda")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return DeviceChoice(device, dtype, "CUDA")


# -- helpers shared by the backends -------------------------------------------------------------------------------

def preprocessor_config(folder: Path) -> dict:
    """The model folder's preprocessor_config.json ({} when absent)."""
    try:
        return json.loads((Path(folder) / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return {}


def size_spec(cfg: dict) -> dict:
    """The processor's `size` as a dict, old formats included (`size: 512, max_size: 2048`)."""
    size = cfg.get("size")
    out = dict(size) if isinstance(size, dict) else {"shortest_edge": int(size)} if size else {}
    if "max_size" in cfg and "longest_edge" not in out:
        out["longest_edge"] = int(cfg["max_size"])
    return out


def normalisation(cfg: dict, choice: DeviceChoice) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, offset) so that pixel_values = uint8 value * scale + offset, as the image processor would do
    (do_rescale with rescale_factor, then normalise with image_mean / image_std; ImageNet by default). Means given
    in 0..255 units (Detectron2-style configs) mean the pixels are not rescaled first."""
    mean = np.asarray(cfg.get("image_mean", IMAGENET_MEAN), np.float64)
    std = np.asarray(cfg.get("image_std", IMAGENET_STD), np.float64)
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if mean.max() > 1.0:
        rescale = 1.0
    if not cfg.get("do_normalize", True):
        mean, std = np.zeros(3), np.ones(3)
    scale = torch.tensor(rescale / std, dtype=torch.float32, device=choice.device).view(1, 3, 1, 1)
    offset = torch.tensor(-mean / std, dtype=torch.float32, device=choice.device).view(1, 3, 1, 1)
    return scale, offset


def image_tensor(image: np.ndarray, choice: DeviceChoice) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> float32 (1, 3, H, W) on the device, values 0..255."""
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # torch warns on read-only arrays (e.g. np.asarray of a PIL image)
        image = image.copy()
    t = torch.from_numpy(image).to(choice.device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).float()


def resized(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size); antialiased when shrinking (as PIL does in the image processors)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if mode == "nearest":
        return torch.nn.functional.interpolate(x, size=size, mode="nearest")
    return torch.nn.functional.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)


def load_pretrained(cls, folder: Path, choice: DeviceChoice, **kwargs):
    """cls.from_pretrained from the local folder only, in the device's precision, eval mode, on the device."""
    model = cls.from_pretrained(str(folder), local_files_only=True, dtype=choice.dtype, **kwargs)
    return model.to(choice.device).eval()
