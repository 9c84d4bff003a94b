"""GPU model set benchmark: per-stage latency p50 / p95 at 1024 px long side, with and without refinement.

    .venv/bin/python -m bench.gpu                      # CUDA; real weights from RENDER_MODEL_DIR if installed,
                                                       # else full-size models with random weights
    .venv/bin/python -m bench.gpu --random-weights     # always the full-size random-weight models
    .venv/bin/python -m bench.gpu --tiny               # CPU smoke test (CI): tiny models, a few runs

Speed depends on the architecture, not on the weights, so without the real checkpoints (or without internet) the
script builds every model at its published size from the key hyper-parameters written below (PUBLISHED; the
configs cannot be downloaded here), saves it the way the hub repositories are laid out and loads it through the
real backends (pipeline.backends.build_pipeline). Stages are timed one by one with torch.cuda.synchronize() around
each, on the shared house photos (synthetic ones if absent). With random weights the segmenter's mask is
meaningless, so geometry / project / refine get a fixed wall mask whenever the segmented one is tiny.

Targets on one H100 (bf16, SDPA, UniPC at low strength): segment + geometry <= 150 ms, total without refinement
<= 0.3 s, with refinement <= 1.5 s. The table says which are met.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
TARGETS_MS = {"segment+geometry": 150, "total (no refine)": 300, "total (with refine)": 1500}

# Key hyper-parameters of the published checkpoints (from their config.json files on the hub).
PUBLISHED = {
    # shi-labs/oneformer_ade20k_swin_tiny
    "oneformer": dict(
        backbone=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224,
                      out_features=["stage1", "stage2", "stage3", "stage4"]),
        model=dict(num_queries=150, hidden_dim=256, conv_dim=256, mask_dim=256, encoder_feedforward_dim=1024,
                   encoder_layers=6, decoder_layers=10, num_attention_heads=8, dim_feedforward=2048,
                   query_dec_layers=2, task_seq_len=77, text_encoder_width=256, text_encoder_num_layers=6,
                   text_encoder_vocab_size=49408, num_labels=150),
        preprocessor=dict(size={"shortest_edge": 512, "longest_edge": 2048})),
    # IDEA-Research/grounding-dino-tiny (Swin-T + BERT-base)
    "grounding_dino": dict(
        backbone=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224,
                      out_indices=[2, 3, 4]),
        text=dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512),
        model=dict(d_model=256, num_queries=900, encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048,
                   decoder_ffn_dim=2048, encoder_attention_heads=8, decoder_attention_heads=8, encoder_n_points=4,
                   decoder_n_points=4, num_feature_levels=4, max_text_len=256, two_stage=True),
        preprocessor=dict(size={"shortest_edge": 800, "longest_edge": 1333})),
    # facebook/sam-vit-base
    "sam": dict(
        vision=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_dim=3072, image_size=1024,
                    patch_size=16, output_channels=256, window_size=14, global_attn_indexes=[2, 5, 8, 11]),
        prompt=dict(hidden_size=256, image_size=1024, patch_size=16),
        decoder=dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8, mlp_dim=2048,
                     iou_head_hidden_dim=256),
        preprocessor=dict(size={"longest_edge": 1024})),
    # depth-anything/Depth-Anything-V2-Small-hf (DINOv2-S backbone)
    "depth_anything": dict(
        backbone=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                      patch_size=14, image_size=518, out_indices=[3, 6, 9, 12], reshape_hidden_states=False),
        model=dict(reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
                   head_hidden_size=32, reassemble_factors=[4, 2, 1, 0.5], depth_estimation_type="relative"),
        preprocessor=dict(size={"height": 518, "width": 518}, ensure_multiple_of=14)),
    # stable-diffusion-v1-5/stable-diffusion-inpainting
    "unet": dict(sample_size=64, in_channels=9, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                 layers_per_block=2, cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
    "text_encoder": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"),
    # lllyasviel/control_v11f1p_sd15_depth
    "controlnet": dict(in_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                       cross_attention_dim=768, attention_head_dim=8,
                       conditioning_embedding_out_channels=(16, 32, 96, 256),
                       down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                         "DownBlock2D")),
}


def _tiny_models():
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_gpu_models

    return tiny_gpu_models


def build_published(stage: Path, log=print) -> Path:
    """Full-size random-weight models in hub layout under `stage` (fp16 files, as the real checkpoints)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import (
        BertConfig,
        CLIPTextConfig,
        CLIPTextModel,
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        OneFormerConfig,
        OneFormerForUniversalSegmentation,
        SamConfig,
        SamModel,
        SwinConfig,
    )

    from pipeline.models import manifest
    from pipeline.models.hub import write_marker

    tiny = _tiny_models()
    specs = manifest()
    P = PUBLISHED

    def folder(name: str) -> Path:
        return stage / specs[name].folder

    def done(name: str, pre: dict | None = None) -> None:
        if pre is not None:
            tiny._json(folder(name) / "preprocessor_config.json", dict(
                do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                image_std=[0.229, 0.224, 0.225], **pre))
        write_marker(folder(name), specs[name], specs[name].revision if len(specs[name].revision) == 40 else None)
        log(f"built {name} (random weights, published size)")

    labels = {i: f"class {i}" for i in range(150)}
    labels[1] = "building, edifice"  # ADE20K index of "building"
    of = OneFormerForUniversalSegmentation(OneFormerConfig(
        backbone_config=SwinConfig(**P["oneformer"]["backbone"]), id2label=labels,
        **{k: v for k, v in P["oneformer"]["model"].items() if k != "num_labels"}))
    of.half().save_pretrained(folder("oneformer-ade20k"))
    tiny.write_clip_tokenizer(folder("oneformer-ade20k"))
    done("oneformer-ade20k", P["oneformer"]["preprocessor"])

    gd = P["grounding_dino"]
    GroundingDinoForObjectDetection(GroundingDinoConfig(
        backbone_config=SwinConfig(**gd["backbone"]), text_config=BertConfig(**gd["text"]), **gd["model"])) \
        .half().save_pretrained(folder("grounding-dino"))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + tiny.BERT_WORDS
    (folder("grounding-dino") / "vocab.txt").write_text("\n".join(words) + "\n")
    tiny._json(folder("grounding-dino") / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer",
                                                                    "do_lower_case": True})
    done("grounding-dino", gd["preprocessor"])

    s = P["sam"]
    SamModel(SamConfig(vision_config=s["vision"], prompt_encoder_config=s["prompt"],
                       mask_decoder_config=s["decoder"])).half().save_pretrained(folder("sam"))
    done("sam", s["preprocessor"])

    d = P["depth_anything"]
    DepthAnythingForDepthEstimation(DepthAnythingConfig(backbone_config=Dinov2Config(**d["backbone"]), **d["model"])) \
        .half().save_pretrained(folder("depth-anything-v2"))
    done("depth-anything-v2", d["preprocessor"])

    sd = folder("sd15-inpaint")
    torch.manual_seed(0)
    for sub, model in (("unet", UNet2DConditionModel(**P["unet"])), ("vae", AutoencoderKL(**P["vae"])),
                       ("text_encoder", CLIPTextModel(CLIPTextConfig(**P["text_encoder"])))):
        model.half().save_pretrained(sd / sub, variant="fp16")
        del model
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(sd / "scheduler")
    tiny.write_clip_tokenizer(sd / "tokenizer", model_max_length=77)
    tiny._json(sd / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    done("sd15-inpaint")
    ControlNetModel(**P["controlnet"]).half().save_pretrained(folder("controlnet-depth"), variant="fp16")
    done("controlnet-depth")
    return stage


def photos(n: int, side: int) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted((SHARED / "data/houses").glob("*.jpg"))[:n]
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        s = side / max(img.size)
        out.append(np.asarray(img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.Resampling.LANCZOS)))
    rng = np.random.default_rng(0)
    while len(out) < n:  # synthetic stand-ins: a wall with courses under a sky
        h, w = side * 3 // 4, side
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 4] = (150, 180, 220)
        img[h // 4:] = (170, 120, 90)
        img[h // 4::max(4, h // 40)] = (110, 80, 60)
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def timed_run(pipe, image: np.ndarray, swatch, refine: bool, sync) -> dict[str, float]:
    from pipeline.project import project_texture
    from pipeline.segment import segment

    t: dict[str, float] = {}
    sync()
    start = time.perf_counter()
    mask = segment(image, pipe.segmenter)
    sync()
    t["segment"] = time.perf_counter() - start
    if mask.mean() < 0.02:  # random weights: use a plausible wall
        h, w = mask.shape
        mask = np.zeros_like(mask)
        mask[h // 4: h * 7 // 8, w // 8: w * 7 // 8] = True
    mark = time.perf_counter()
    geometry = pipe.geometry.estimate(image, mask)
    sync()
    t["geometry"] = time.perf_counter() - mark
    mark = time.perf_counter()
    composite = project_texture(image, mask, geometry, swatch, 24.0)
    t["project"] = time.perf_counter() - mark
    t["total (no refine)"] = time.perf_counter() - start
    if refine:
        mark = time.perf_counter()
        pipe.refiner.refine(image, composite, mask, 42)
        sync()
        t["refine"] = time.perf_counter() - mark
        t["total (with refine)"] = time.perf_counter() - start
    t["segment+geometry"] = t["segment"] + t["geometry"]
    return t


def table(samples: list[dict[str, float]], note: str, targets: dict[str, int] | None = None) -> str:
    order = ["segment", "geometry", "segment+geometry", "project", "total (no refine)", "refine", "total (with refine)"]
    rows = ["| stage | p50 ms | p95 ms | target |", "|---|---:|---:|---|"]
    for key in order:
        values = [s[key] for s in samples if key in s]
        if not values:
            continue
        p50, p95 = (float(np.percentile(values, q)) * 1000 for q in (50, 95))
        target = (targets or {}).get(key)
        verdict = "" if target is None else f"<= {target} ms: {'met' if p95 <= target else 'NOT met'} (p95)"
        rows.append(f"| {key} | {p50:.0f} | {p95:.0f} | {verdict} |")
    return "\n".join(rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with tiny models")
    parser.add_argument("--random-weights", action="store_true", help="ignore installed weights")
    parser.add_argument("--model-dir", help="model folder (default RENDER_MODEL_DIR)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs per photo and mode")
    parser.add_argument("--side", type=int, default=1024, help="long side of the photos")
    parser.add_argument("--steps", type=int, default=20, help="refinement scheduler steps (x strength are run)")
    parser.add_argument("--strength", type=float, default=0.3)
    parser.add_argument("--refine-side", type=int, default=768)
    parser.add_argument("--detect-side", type=int, help="Grounding DINO short side (default: its preprocessor's)")
    args = parser.parse_args(argv)

    import torch

    from pipeline import load_texture
    from pipeline.backends import build_pipeline, chosen_backends, gpu_installed

    if args.tiny:
        os.environ.setdefault("AI_FORCE_CPU", "1")
        args.photos, args.repeats = min(args.photos, 2), min(args.repeats, 2)
    model_dir = Path(args.model_dir or os.environ.get("RENDER_MODEL_DIR", "") or tempfile.mkdtemp(prefix="gpu-bench-"))
    weights = "installed"
    if args.tiny or args.random_weights or not all(gpu_installed(model_dir, s) for s in ("segment", "geometry",
                                                                                          "refine")):
        from pipeline.models import install_from

        stage = Path(tempfile.mkdtemp(prefix="gpu-bench-stage-"))
        model_dir = Path(tempfile.mkdtemp(prefix="gpu-bench-models-"))
        (_tiny_models().build(stage) if args.tiny else build_published(stage))
        install_from(stage, model_dir, model_set="gpu", log=lambda _m: None)
        weights = "tiny random" if args.tiny else "random (published sizes)"

    options = {"refine": {"steps": args.steps, "strength": args.strength, "side": args.refine_side}}
    if args.detect_side:
        options["segment"] = {"detect_side": args.detect_side}
    if args.tiny:
        options["refine"].update(side=64, steps=4, strength=0.5, prompt="a house")
    started = time.perf_counter()
    pipe = build_pipeline(model_dir, segment="gpu", geometry="gpu", refine="gpu", device=args.device,
                          options=options)
    load_s = time.perf_counter() - started
    device = pipe.segmenter.choice.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    images = photos(args.photos, args.side)
    swatch = load_texture("#8a5a44")
    timed_run(pipe, images[0], swatch, True, sync)  # warm-up: CUDA context, kernels, allocator
    samples = []
    for refine in (False, True):
        for image in images:
            for _ in range(args.repeats):
                samples.append(timed_run(pipe, image, swatch, refine, sync))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    note = (f"{len(samples)} runs, {len(images)} photos at {args.side} px long side, {name}, weights: {weights}, "
            f"model load {load_s:.1f} s, refinement {options['refine']['steps']} steps x strength "
            f"{options['refine']['strength']} on a {options['refine']['side']} px crop.\n"
            f"backends: {chosen_backends(pipe)}")
    report = table(samples, note, None if args.tiny else TARGETS_MS)  # the targets are for one H100
    print(report)
    return report


if __name__ == "__main__":
    main()
