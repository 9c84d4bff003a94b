"""Segment stage, GPU model set: photo -> probability that a pixel is paintable wall.

1. Building: an ADE20K semantic model (OneFormer, or Mask2Former: same output heads) gives per-class probabilities;
   paint = the share of the paintable classes (PAINT_CLASSES, matched by name in the model's id2label).
2. Exclusions: Grounding DINO finds boxes for EXCLUDE_PROMPTS ("window. door. garage door. ..."), SAM turns each box
   into a mask (kept inside its box); their union is removed from the building.
3. Snapping: a guided filter with the photo as guide pulls the probability's edges onto the photo's edges.

Pre- and post-processing are done here with torch on the device (the image processors' own settings are read
from each folder's preprocessor_config.json), so no torchvision is needed and nothing leaves the GPU until the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PipelineError
from ..models import require
from .device import DeviceChoice, image_tensor, load_pretrained, normalisation, preprocessor_config, resized, size_spec

PAINT_CLASSES = frozenset({"wall", "building", "edifice", "house", "skyscraper"})
EXCLUDE_PROMPTS = ("window", "door", "garage door", "roof", "gutter", "trim", "shutter")
MODELS = ("oneformer-ade20k", "grounding-dino", "sam")


def _aliases(label: str) -> set[str]:
    return {part.strip().lower() for part in label.replace(";", ",").split(",") if part.strip()}


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class SemanticModel:
    """ADE20K OneFormer / Mask2Former -> paintable-class probability."""

    def __init__(self, folder: Path, choice: DeviceChoice, short_side: int | None = None):
        self.choice = choice
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        self.task_inputs = None
        if model_type == "oneformer":
            from transformers import CLIPTokenizer, OneFormerForUniversalSegmentation

            self.model = load_pretrained(OneFormerForUniversalSegmentation, folder, choice)
            tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
            n = self.model.config.task_seq_len  # as OneFormerProcessor: token ids * attention mask, padded
            tok = tokenizer(["the task is semantic"], padding="max_length", max_length=n, truncation=True,
                            return_tensors="pt")
            self.task_inputs = (tok["input_ids"] * tok["attention_mask"]).to(choice.device)
        elif model_type == "mask2former":
            from transformers import Mask2FormerForUniversalSegmentation

            self.model = load_pretrained(Mask2FormerForUniversalSegmentation, folder, choice)
        else:
            raise PipelineError(f"{folder}: model type {model_type!r} is not a supported semantic segmentation "
                                f"model (oneformer, mask2former)")
        labels = {int(k): v for k, v in self.model.config.id2label.items()}
        self.paint_ids = sorted(i for i, name in labels.items() if _aliases(name) & PAINT_CLASSES)
        if not self.paint_ids:
            raise PipelineError(f"{folder}: no building / house / wall class among the model's labels")
        pre = preprocessor_config(folder)
        size = size_spec(pre)
        self.short_side = short_side or int(size.get("shortest_edge", 512))
        self.long_max = int(size.get("longest_edge", 2048))
        self.scale, self.offset = normalisation(pre, choice)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """x: (1, 3, H, W) 0..255 on the device -> (H, W) float32 paint-class probability."""
        H, W = x.shape[-2:]
        s = min(self.short_side / min(H, W), self.long_max / max(H, W))
        h, w = max(32, round(H * s)), max(32, round(W * s))
        pixels = _pad_to(resized(x, (h, w)) * self.scale + self.offset, 32).to(self.choice.dtype)
        kwargs = {"task_inputs": self.task_inputs} if self.task_inputs is not None else {}
        out = self.model(pixel_values=pixels, **kwargs)
        classes = out.class_queries_logits.float().softmax(-1)[..., :-1]  # drop the "no object" class
        masks = out.masks_queries_logits.float().sigmoid()
        total = torch.einsum("bqc,bqhw->bhw", classes, masks)
        paint = torch.einsum("bqc,bqhw->bhw", classes[..., self.paint_ids], masks)
        prob = (paint / total.clamp_min(1e-6))[:, None]
        hp, wp = pixels.shape[-2:]
        prob = resized(prob, (hp, wp))[..., :h, :w]  # mask logits cover the padded input
        return resized(prob, (H, W))[0, 0].clamp(0, 1)


class TextBoxes:
    """Grounding DINO: boxes (pixels, x0 y0 x1 y1) of the prompted things, with scores."""

    def __init__(self, folder: Path, choice: DeviceChoice, prompts=EXCLUDE_PROMPTS, *, short_side: int | None = None,
                 box_threshold: float = 0.3):
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection

        self.choice = choice
        self.model = load_pretrained(GroundingDinoForObjectDetection, folder, choice)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        text = ". ".join(p.lower() for p in prompts) + "."
        tok = tokenizer([text], return_tensors="pt")
        self.text = {k: v.to(choice.device) for k, v in tok.items()
                     if k in ("input_ids", "attention_mask", "token_type_ids")}
        ids = tok["input_ids"][0].tolist()
        skip = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(["."]))
        self.phrase_tokens = torch.tensor([i not in skip for i in ids], device=choice.device)
        pre = preprocessor_config(folder)
        size = size_spec(pre)
        self.short_side = short_side or int(size.get("shortest_edge", 800))
        self.long_max = int(size.get("longest_edge", 1333))
        self.scale, self.offset = normalisation(pre, choice)
        self.box_threshold = box_threshold

    def boxes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = x.shape[-2:]
        s = min(self.short_side / min(H, W), self.long_max / max(H, W))
        h, w = max(32, round(H * s)), max(32, round(W * s))
        pixels = (resized(x, (h, w)) * self.scale + self.offset).to(self.choice.dtype)
        out = self.model(pixel_values=pixels, pixel_mask=torch.ones((1, h, w), dtype=torch.long, device=x.device),
                         **self.text)
        n = self.phrase_tokens.shape[0]
        probs = out.logits[0, :, :n].float().sigmoid() * self.phrase_tokens
        scores = probs.max(-1).values
        keep = scores > self.box_threshold
        cx, cy, bw, bh = out.pred_boxes[0, keep].float().unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        boxes = (boxes * torch.tensor([W, H, W, H], device=x.device)).clamp_min(0)
        boxes = torch.minimum(boxes, torch.tensor([W, H, W, H], device=x.device, dtype=boxes.dtype))
        return boxes, scores[keep]


class BoxMasks:
    """SAM (transformers SamModel): union of the masks of the given boxes, each kept inside its box."""

    def __init__(self, folder: Path, choice: DeviceChoice, box_margin: float = 0.05):
        from transformers import SamModel

        self.choice = choice
        self.model = load_pretrained(SamModel, folder, choice)
        self.side = int(self.model.config.vision_config.image_size)
        self.scale, self.offset = normalisation(preprocessor_config(folder), choice)
        self.box_margin = box_margin

    def union(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if not len(boxes):
            return torch.zeros((H, W), device=x.device)
        s = self.side / max(H, W)
        h, w = max(1, round(H * s)), max(1, round(W * s))
        pixels = resized(x, (h, w)) * self.scale + self.offset
        pixels = F.pad(pixels, (0, self.side - w, 0, self.side - h)).to(self.choice.dtype)  # SAM pads after normalising
        embeddings = self.model.get_image_embeddings(pixels)
        scaled = boxes * s
        out = self.model(image_embeddings=embeddings, input_boxes=scaled[None].to(self.choice.dtype),
                         multimask_output=False)
        logits = resized(out.pred_masks[0, :, :1].float(), (self.side, self.side))[:, 0, :h, :w]
        masks = logits.sigmoid()
        ys = torch.arange(h, device=x.device, dtype=torch.float32)[None, :, None] + 0.5
        xs = torch.arange(w, device=x.device, dtype=torch.float32)[None, None, :] + 0.5
        pad = self.box_margin * torch.maximum(scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1])
        x0, y0, x1, y1 = [(scaled[:, i] + sign * pad)[:, None, None] for i, sign in enumerate((-1, -1, 1, 1))]
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        union = (masks * inside).amax(0)
        return resized(union[None, None], (H, W))[0, 0]


def guided_filter(guide: torch.Tensor, p: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter; guide and p (1, 1, H, W), guide in [0, 1]. Edges of p move onto edges of guide."""
    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

    mean_i, mean_p = box(guide), box(p)
    a = (box(guide * p) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


class GpuSegmenter:
    """Segmenter protocol implementation of the GPU model set (see the module docstring)."""

    def __init__(self, model_dir: Path | str, choice: DeviceChoice, *, semantic_side: int | None = None,
                 detect_side: int | None = None, box_threshold: float = 0.3, max_boxes: int = 48,
                 max_box_fraction: float = 0.5, snap_eps: float = 2e-3):
        model_dir = Path(model_dir)
        folders = {name: require(model_dir, name) for name in MODELS}  # all or nothing, before loading any
        self.choice = choice
        self.semantic = SemanticModel(folders["oneformer-ade20k"], choice, semantic_side)
        self.detector = TextBoxes(folders["grounding-dino"], choice, short_side=detect_side,
                                  box_threshold=box_threshold)
        self.masks = BoxMasks(folders["sam"], choice)
        self.max_boxes = max_boxes
        self.max_box_fraction = max_box_fraction
        self.snap_eps = snap_eps
        self.name = f"gpu:{'+'.join(MODELS)} ({choice.label})"

    def layers(self, image: np.ndarray, keep: tuple[str, ...] = ("building", "boxes", "scores", "excluded", "paint")
               ) -> dict[str, np.ndarray]:
        """The intermediates named in `keep`, as numpy: building, boxes (N, 4: x0 y0 x1 y1 px), scores, excluded,
        paint (what paint_probability returns)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        H, W = image.shape[:2]
        with self.choice.run("segment"):
            x = image_tensor(image, self.choice)
            out = {"building": self.semantic.probability(x)}
            boxes, scores = self.detector.boxes(x)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep_box = area <= self.max_box_fraction * H * W  # a "door" box around the whole house would erase it
            order = scores[keep_box].argsort(descending=True)[: self.max_boxes]
            out["boxes"], out["scores"] = boxes[keep_box][order], scores[keep_box][order]
            out["excluded"] = self.masks.union(x, out["boxes"])
            guide = (x[:, :1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114) / 255
            radius = max(2, round(max(H, W) / 256))
            paint = (out["building"] * (1 - out["excluded"]))[None, None]
            out["paint"] = guided_filter(guide, paint, radius, self.snap_eps)[0, 0].clamp(0, 1)
            return {k: out[k].float().cpu().numpy() for k in keep}

    def paint_probability(self, image: np.ndarray) -> np.ndarray:
        return self.layers(image, keep=("paint",))["paint"]
