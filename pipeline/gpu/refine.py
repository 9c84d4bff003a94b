"""Refine stage, GPU model set: Stable Diffusion 1.5 inpainting + a depth ControlNet, on a crop around the mask.

The projected composite already has the right material, layout and light; diffusion at low strength only makes it
look photographed (grain, micro-shading, mortar depth). So:

* crop: the mask's bounding box plus a margin, scaled so its long side is `side` px (multiples of 64);
* control: Depth Anything V2 on the photo crop (the house's real relief), normalised to [0, 1];
* diffusion: StableDiffusionControlNetInpaintPipeline, `strength` (default 0.3) of `steps` UniPC steps, the
  prompt embeddings computed once at load, seeded by `refinement_seed` with a generator on the device (same seed,
  same device, same result);
* composite back: alpha ramps from 0 at the mask's edge to 1 a few px inside; where alpha is 0 (everything
  outside the mask) the composite's pixels are copied, so they stay bit-identical.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..models import manifest, require
from .depth import DepthModel
from .device import DeviceChoice, image_tensor

PROMPT = ("photo of a house facade, realistic building material, natural daylight, soft shadows, sharp detail, "
          "high quality photograph")
NEGATIVE = "painting, drawing, cartoon, blurry, distorted, warped, text, watermark, oversaturated"
MODELS = ("sd15-inpaint", "controlnet-depth", "depth-anything-v2")


def crop_box(mask: np.ndarray, margin: float = 0.08, minimum: int = 32) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) around the mask, with a margin, inside the image."""
    ys = np.nonzero(mask.any(1))[0]
    xs = np.nonzero(mask.any(0))[0]
    H, W = mask.shape
    pad = max(8, int(margin * max(ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1)))
    out = []
    for lo, hi, n in ((ys[0], ys[-1] + 1, H), (xs[0], xs[-1] + 1, W)):
        lo, hi = max(0, lo - pad), min(n, hi + pad)
        if hi - lo < minimum:  # at least `minimum` px each way where the image allows
            grow = minimum - (hi - lo)
            lo, hi = max(0, lo - grow // 2), min(n, hi + grow - grow // 2)
        out += [int(lo), int(hi)]
    return out[0], out[1], out[2], out[3]


def working_size(h: int, w: int, side: int) -> tuple[int, int]:
    s = side / max(h, w)
    return max(64, round(h * s / 64) * 64), max(64, round(w * s / 64) * 64)


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """float32 alpha: exactly 0 outside the mask, a smooth ramp over its outer `radius` px, exactly 1 inside that."""
    dist = cv2.distanceTransform(np.asarray(mask, np.uint8), cv2.DIST_L2, 3)
    t = np.clip(dist / (max(radius, 0) + 1), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def composite(base: np.ndarray, refined: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """base where alpha == 0 (bit for bit), else the alpha blend (uint8 RGB)."""
    a = alpha[..., None]
    blend = np.clip(np.rint(base.astype(np.float32) * (1 - a) + refined.astype(np.float32) * a), 0, 255)
    return np.where(a > 0, blend.astype(np.uint8), base)


class DiffusionRefiner:
    """Refiner protocol implementation of the GPU model set (see the module docstring)."""

    def __init__(self, model_dir: Path | str, choice: DeviceChoice, *, depth: DepthModel | None = None,
                 side: int = 768, steps: int = 20, strength: float = 0.3, guidance: float = 4.0,
                 control_scale: float = 0.6, prompt: str = PROMPT, negative: str = NEGATIVE):
        from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline, UniPCMultistepScheduler

        model_dir = Path(model_dir)
        folders = {name: require(model_dir, name) for name in MODELS}  # all or nothing, before loading any
        specs = manifest()
        self.choice = choice
        self.depth = depth or DepthModel(folders["depth-anything-v2"], choice)
        controlnet = ControlNetModel.from_pretrained(
            str(folders["controlnet-depth"]), local_files_only=True, dtype=choice.dtype,
            variant=specs["controlnet-depth"].variant)
        self.pipe = StableDiffusionControlNetInpaintPipeline.from_pretrained(
            str(folders["sd15-inpaint"]), controlnet=controlnet, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, local_files_only=True, dtype=choice.dtype,
            variant=specs["sd15-inpaint"].variant).to(choice.device)
        self.pipe.scheduler = UniPCMultistepScheduler.from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)
        self.side, self.steps, self.strength = side, steps, strength
        self.guidance, self.control_scale = guidance, control_scale
        with choice.run("refine"):
            embeds = self.pipe.encode_prompt(prompt, choice.device, 1, guidance > 1, negative)
        self.prompt_embeds, self.negative_embeds = embeds[0], embeds[1]
        self.name = f"gpu:sd15-inpaint+controlnet-depth ({choice.label})"

    def refine(self, image: np.ndarray, composite_image: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        mask = np.asarray(mask, bool)
        if not mask.any():
            return composite_image.copy()
        y0, y1, x0, x1 = crop_box(mask)
        photo, base, m = image[y0:y1, x0:x1], composite_image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        ch, cw = m.shape
        h, w = working_size(ch, cw, self.side)
        dil = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8))
        with self.choice.run("refine"):
            dev = self.choice.device
            x = torch.nn.functional.interpolate(image_tensor(base, self.choice) / 255, size=(h, w), mode="bilinear",
                                                align_corners=False, antialias=True).clamp(0, 1)
            mask_t = torch.from_numpy(cv2.resize(dil, (w, h), interpolation=cv2.INTER_NEAREST)).to(dev)
            disp = self.depth.disparity(image_tensor(photo, self.choice))
            disp = (disp - disp.min()) / (disp.max() - disp.min()).clamp_min(1e-6)
            control = torch.nn.functional.interpolate(disp[None, None], size=(h, w), mode="bilinear",
                                                      align_corners=False).expand(1, 3, h, w)
            generator = torch.Generator(device=dev).manual_seed(int(seed))
            out = self.pipe(prompt_embeds=self.prompt_embeds, negative_prompt_embeds=self.negative_embeds,
                            image=x, mask_image=mask_t[None, None].float(), control_image=control, height=h, width=w,
                            strength=self.strength, num_inference_steps=self.steps, guidance_scale=self.guidance,
                            controlnet_conditioning_scale=self.control_scale, generator=generator,
                            output_type="np").images[0]
        refined = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
        refined = cv2.resize(refined, (cw, ch), interpolation=cv2.INTER_CUBIC if h < ch else cv2.INTER_AREA)
        radius = max(1, round(max(image.shape[:2]) / 512))
        result = composite_image.copy()
        result[y0:y1, x0:x1] = composite(base, refined, feather(m, radius))
        return result
