"""House parser: a small UNet that turns (photo, ADE20K context) into the house taxonomy (`CLASSES`).

The ADE20K segmenter (ade20k-deeplab150) separates building from sky, vegetation, ground, cars and people, but
has no roof, garage-door or trim class and paints windows and doors as "building". The parser gets the photo
plus, at 1/4 resolution, the ADE20K model's last decoder features (256 channels) and its class probabilities
summed into a few groups (`ADE_GROUPS`), and predicts the classes of the labelled US house photos
(shared data `houses/`): wall, roof, window, door, garage door, trim, sky, vegetation, ground, other. The paint
probability is the softmax of `wall`; the other house parts (`SURFACES`) come from the same softmax.

Trained by tools/train_facade_parser.py; weights in pipeline/models/weights/facade_parser.pt (model
"facade-parser" in the manifest). Inference runs under torch.inference_mode(); torch.set_num_threads is left to
the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Groups of ADE20K-150 classes (indices into the 151 outputs of ade20k-deeplab150, 0 = "others").
# The parser's context gets one channel per group (summed softmax probabilities) plus one for the rest.
ADE_GROUPS: dict[str, tuple[int, ...]] = {
    "wall": (1,),
    "building": (2, 26, 49, 80, 85),  # building, house, skyscraper, hovel, tower
    "sky": (3,),
    "vegetation": (5, 18, 67, 73),  # tree, plant, flower, palm
    "ground": (4, 7, 10, 12, 14, 29, 30, 47, 53, 92, 95),  # floor, road, grass, sidewalk, earth, rug, field, ...
    "vehicle": (21, 81, 84, 103, 117, 128),  # car, bus, truck, van, minibike, bicycle
    "person": (13,),
    "window": (9,),
    "door": (15,),
    "fence": (33, 39, 96),  # fence, railing, bannister
    "column": (43,),
    "sign": (44, 87, 89, 107, 124),  # signboard, awning, booth, canopy, trade name
    "stairs": (54, 60, 122),  # stairs, stairway, step
    "blind": (19, 64),  # curtain, blind
    "ceiling": (6,),
    "pole": (88, 94, 137),  # streetlight, pole, traffic light
    "terrain": (17, 35, 69),  # mountain, rock, hill
    "water": (22, 27, 61, 129),  # water, sea, river, lake
}
N_ADE = len(ADE_GROUPS) + 1  # + "rest"

# Output classes = the house label indices 1..10 of shared data `houses/` (mask index - 1). Unlabelled pixels
# (index 0) are not a class: they are left out of training and scoring.
CLASSES = ("wall", "roof", "window", "door", "garage_door", "trim", "sky", "vegetation", "ground", "other")
PAINT_CLASS = CLASSES.index("wall")
# The house parts a render may paint (wall) or must keep (the rest), returned per job as `surfaces`.
SURFACES = ("wall", "roof", "window", "door", "garage_door", "trim")
# facades-hslu (Lucerne street photos, CC BY 4.0) mask index -> house class. Shop fronts are glazing and
# entrances (window); balcony railings are trim; street is ground; cars, fences, signs and street furniture are
# other. Its unlabelled pixels (sky, roofs, whatever was not drawn) stay unlabelled.
HSLU_TO_HOUSE = {1: "trim", 2: "other", 3: "wall", 4: "other", 5: "other", 6: "window", 7: "ground",
                 8: "other", 9: "vegetation", 10: "window"}
N_FEAT = 256  # channels of the ade20k-deeplab150 decoder features (tensor "tfl.conv_2d39", 129x129)
N_CTX = N_FEAT + N_ADE
CTX_LEVEL = 2  # the context joins the encoder at 1/4 resolution

_GROUP_MATRIX: np.ndarray | None = None


def group_matrix() -> np.ndarray:
    """(151, N_ADE) float32 matrix that sums ADE20K-150 probabilities into the input groups."""
    global _GROUP_MATRIX
    if _GROUP_MATRIX is None:
        m = np.zeros((151, N_ADE), np.float32)
        used = np.zeros(151, bool)
        for g, idx in enumerate(ADE_GROUPS.values()):
            m[list(idx), g] = 1.0
            used[list(idx)] = True
        m[~used, N_ADE - 1] = 1.0
        _GROUP_MATRIX = m
    return _GROUP_MATRIX


def ade_groups(logits: np.ndarray) -> np.ndarray:
    """ADE20K-150 logits (..., 151) -> grouped softmax probabilities (..., N_ADE) float32."""
    x = logits.astype(np.float32, copy=False)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    x /= x.sum(axis=-1, keepdims=True)
    return x @ group_matrix()


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FacadeParser(nn.Module):
    """UNet over the photo, with the ADE20K context joining the encoder at 1/4 resolution.

    forward(rgb, ctx): rgb (N, 3, H, W) in [0, 1], H and W multiples of 16; ctx (N, N_CTX, H/4, W/4): the
    ade20k-deeplab150 decoder features (256) followed by the grouped class probabilities (N_ADE), resized to
    the 1/4 grid. Returns logits (N, len(CLASSES), H, W).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128), ctx_width: int = 48,
                 n_ctx: int = N_CTX, n_out: int = len(CLASSES)):
        super().__init__()
        self.widths = tuple(widths)
        self.ctx_width = ctx_width
        self.ctx = nn.Sequential(nn.Conv2d(n_ctx, ctx_width, 1, bias=False), nn.BatchNorm2d(ctx_width),
                                 nn.ReLU(inplace=True))
        self.enc = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            self.enc.append(_block(cin + (ctx_width if i == CTX_LEVEL else 0), w))
            cin = w
        self.dec = nn.ModuleList()
        for w_skip, w in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.dec.append(_block(w + w_skip, w_skip))
        self.head = nn.Conv2d(widths[0], n_out, 1)

    def forward(self, rgb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = rgb - 0.5
        skips = []
        for i, blk in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            if i == CTX_LEVEL:
                x = torch.cat([x, self.ctx(ctx)], 1)
            x = blk(x)
            skips.append(x)
        skips.pop()
        for blk in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], 1))
        return self.head(x)


def save_facade_parser(model: FacadeParser, path: Path | str, meta: dict | None = None) -> None:
    """Stores a half-precision state_dict plus the architecture (small file; loaded back as float32)."""
    import json

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = json.loads(json.dumps(meta or {}, default=float))  # plain types only: loadable with weights_only
    torch.save({"widths": list(model.widths), "ctx_width": model.ctx_width, "classes": list(CLASSES),
                "ade_groups": list(ADE_GROUPS), "state_dict": state, "meta": meta}, path)


def load_facade_parser(path: Path | str) -> FacadeParser:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("classes") != list(CLASSES) or ckpt.get("ade_groups") != list(ADE_GROUPS):
        raise ValueError(f"{path}: facade parser weights were made for other classes / input groups")
    model = FacadeParser(tuple(ckpt["widths"]), ckpt["ctx_width"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    model.eval()
    return model


@torch.inference_mode()
def parse(model: FacadeParser, rgb: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """rgb float32 (H, W, 3) in [0, 1] with H, W multiples of 16; ctx float32 (H/4, W/4, N_CTX) ->
    class probabilities (H, W, len(CLASSES)) float32."""
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    c = torch.from_numpy(np.ascontiguousarray(ctx.transpose(2, 0, 1)))[None]
    prob = torch.softmax(model(x, c), 1)[0]
    return prob.permute(1, 2, 0).numpy()
