"""The GPU model set: the same stage protocols as the embedded set (pipeline/stages.py), with larger models.

    segment   GpuSegmenter     OneFormer (ADE20K) building - Grounding DINO + SAM exclusions, snapped to edges
    geometry  DepthGeometry    Depth Anything V2 -> vertical RANSAC planes, oriented by the line method's VPs
    refine    DiffusionRefiner SD 1.5 inpainting + depth ControlNet on a crop, composited back outside-identical

`device.choose_device` picks CUDA (bf16/fp16) or the CPU (AI_FORCE_CPU); pipeline/backends.py chooses between
these and the embedded stages. Importing this package does not import torch models or diffusers: each module
imports what it needs when a backend is built.
"""

from .device import DeviceChoice, choose_device

__all__ = ["DeviceChoice", "choose_device"]
