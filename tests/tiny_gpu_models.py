"""Tiny, randomly initialised versions of the GPU model set, saved like the hub repositories, with known outputs.

Each builder makes the model from a small config (same classes as the real checkpoints), then pins the part of the
network that decides the answer so a test can predict it:

* OneFormer: class head weight 0, bias -> `winner` class for every query; mask head and pixel projection weight 0,
  biases > 0 -> every query's mask covers the whole image. Semantic map = `winner` everywhere.
* Grounding DINO: decoder output norm -> a constant query vector q, text enhancer output norm -> t; the contrastive
  logits are q . t for every (query, token): +32 (all detected) or -32 (nothing). Box head weight 0, bias +-30:
  cx, cy, w, h saturate at 0 or 1, so the box is a known quadrant (e.g. cx = cy = 0, w = h = 1 -> top-left).
* SAM: upscaling conv and hypernetwork heads pinned -> mask logits > 0 everywhere (the mask is the box, once kept
  inside the box).
* Depth Anything: last conv weight 0, bias `disparity` -> constant disparity: a fronto-parallel plane.
* SD inpainting / ControlNet / VAE / CLIP text encoder: random (the tests check seeding and compositing, not looks).

Folders get hub-like file sets (tokenizer vocab files written by hand, fp16 weight variants, a model_index.json
that names the safety checker as the real one does) and are installed with the real `install_from`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pipeline.models import hub, install_from, manifest
from pipeline.models.hub import write_marker

ADE_LABELS = ["wall", "building, edifice", "sky", "floor, flooring", "tree", "ceiling", "road, route", "windowpane"]
CLIP_CHARS = "abcdefghijklmnopqrstuvwxyz.,"
BERT_WORDS = ["window", "door", "garage", "roof", "gutter", "trim", "shutter"]
QUADRANTS = {"top-left": (-30, -30), "top-right": (30, -30), "bottom-left": (-30, 30), "bottom-right": (30, 30)}


def _last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def _pin(layer: nn.Module, bias) -> None:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype).expand_as(layer.bias))


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_clip_tokenizer(folder: Path, model_max_length: int | None = None) -> None:
    """A tiny byte-level BPE vocabulary in CLIP's format (vocab.json + merges.txt)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CLIP_CHARS:
        vocab[c] = len(vocab)
    for c in CLIP_CHARS:
        vocab[c + "</w>"] = len(vocab)
    vocab["th"] = len(vocab)
    vocab["the</w>"] = len(vocab)
    _json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    if model_max_length:
        _json(folder / "tokenizer_config.json", {"tokenizer_class": "CLIPTokenizer",
                                                 "model_max_length": model_max_length})


def clip_vocab_size() -> int:
    return 2 + 2 * len(CLIP_CHARS) + 2


def _swin(**kw):
    from transformers import SwinConfig

    return SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                      window_size=4, **kw)


def oneformer(folder: Path, winner: str = "building, edifice") -> None:
    from transformers import OneFormerConfig, OneFormerForUniversalSegmentation

    config = OneFormerConfig(
        backbone_config=_swin(out_features=["stage1", "stage2", "stage3", "stage4"]), num_queries=8, conv_dim=32,
        mask_dim=32, hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2,
        num_attention_heads=2, dim_feedforward=32, query_dec_layers=1, text_encoder_width=32,
        text_encoder_num_layers=1, text_encoder_vocab_size=clip_vocab_size(),
        id2label=dict(enumerate(ADE_LABELS)), label2id={v: k for k, v in enumerate(ADE_LABELS)})
    model = OneFormerForUniversalSegmentation(config).eval()
    decoder = model.model.transformer_module.decoder
    bias = torch.full((len(ADE_LABELS) + 1,), -10.0)
    bias[ADE_LABELS.index(winner)] = 10.0
    _pin(decoder.class_embed, bias)
    _pin(_last_linear(decoder.mask_embed), 1.0)
    _pin(model.model.pixel_level_module.decoder.mask_projection, 1.0)
    model.save_pretrained(folder)
    write_clip_tokenizer(folder)
    _json(folder / "preprocessor_config.json", {
        "image_processor_type": "OneFormerImageProcessor", "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "size": {"shortest_edge": 64, "longest_edge": 256}})


def grounding_dino(folder: Path, box: str | None = "top-left") -> None:
    """box: a quadrant name (every query finds it) or None (nothing found)."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + BERT_WORDS
    config = GroundingDinoConfig(
        backbone_config=_swin(out_indices=[2, 3, 4]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64),
        d_model=32, num_queries=16, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2,
        max_text_len=32)
    model = GroundingDinoForObjectDetection(config).eval()
    query = torch.ones(32)
    text = query if box else -query
    with torch.no_grad():
        norm = model.model.decoder.layer_norm
        norm.weight.zero_()
        norm.bias.copy_(query)
        enhancer = model.model.encoder.layers[-1].text_enhancer_layer.layer_norm_after
        enhancer.weight.zero_()
        enhancer.bias.copy_(text)
    cx, cy = QUADRANTS[box or "top-left"]
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("bbox_embed",) or name.endswith("decoder.bbox_embed"):
            for head in module if isinstance(module, nn.ModuleList) else [module]:
                _pin(_last_linear(head), torch.tensor([cx, cy, 30.0, 30.0]))
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    _json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                             "model_max_length": 64})
    _json(folder / "preprocessor_config.json", {
        "image_processor_type": "GroundingDinoImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "size": {"shortest_edge": 64, "longest_edge": 128}})


def sam(folder: Path) -> None:
    from transformers import SamConfig, SamModel

    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=256, patch_size=16,
                           output_channels=32, window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                                 iou_head_hidden_dim=32))
    model = SamModel(config).eval()
    decoder = model.mask_decoder
    _pin(decoder.upscale_conv2, 1.0)
    for mlp in decoder.output_hypernetworks_mlps:
        _pin(mlp.proj_out, 5.0)
    model.save_pretrained(folder)
    _json(folder / "preprocessor_config.json", {
        "image_processor_type": "SamImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "size": {"longest_edge": 256}})


def depth_anything(folder: Path, disparity: float = 2.0) -> None:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                     intermediate_size=64, image_size=70, patch_size=14, out_indices=[1, 2, 3, 4],
                                     reshape_hidden_states=False),
        reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
        depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    _pin(model.head.conv3, disparity)
    model.save_pretrained(folder)
    _json(folder / "preprocessor_config.json", {
        "image_processor_type": "DPTImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "ensure_multiple_of": 14, "keep_aspect_ratio": True, "size": {"height": 70, "width": 70}})


def _unet_blocks() -> dict:
    return dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"))


def sd_inpainting(folder: Path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, in_channels=9, out_channels=4,
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **_unet_blocks())
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        sample_size=32)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=clip_vocab_size(), hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    for sub, model in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        model.half().save_pretrained(folder / sub, variant="fp16")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    write_clip_tokenizer(folder / "tokenizer", model_max_length=77)
    _json(folder / "model_index.json", {  # as the hub repository's: names a safety checker that is not downloaded
        "_class_name": "StableDiffusionInpaintPipeline", "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})


def controlnet(folder: Path) -> None:
    from diffusers import ControlNetModel

    torch.manual_seed(1)
    ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 16), **_unet_blocks()).half() \
        .save_pretrained(folder, variant="fp16")


def build(stage: Path, *, winner: str = "building, edifice", box: str | None = "top-left",
          disparity: float = 2.0, only: tuple[str, ...] | None = None) -> Path:
    """Build the GPU set's folders under `stage` (marked at the manifest revisions, as `models pull` leaves
    them); `only`: a subset of model names."""
    specs = manifest()
    builders = {"oneformer-ade20k": lambda f: oneformer(f, winner), "grounding-dino": lambda f: grounding_dino(f, box),
                "sam": sam, "depth-anything-v2": lambda f: depth_anything(f, disparity),
                "sd15-inpaint": sd_inpainting, "controlnet-depth": controlnet}
    for name, make in builders.items():
        if only is not None and name not in only:
            continue
        folder = stage / specs[name].folder
        make(folder)
        revision = specs[name].revision
        write_marker(folder, specs[name], revision if len(revision) == 40 else "0" * 40)
    return stage


def install(stage: Path, model_dir: Path, names: tuple[str, ...] | None = None) -> Path:
    """Install a built stage folder into `model_dir` with the real offline installer (all of the GPU set, or
    `names` one by one)."""
    if names is None:
        install_from(stage, model_dir, model_set="gpu", log=lambda _msg: None)
    for name in names or ():
        spec = manifest()[name]
        hub.install_from(spec, stage / spec.folder, model_dir, log=lambda _msg: None)
    return model_dir
