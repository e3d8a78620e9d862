"""The README.md written beside saved weights: what the model is, how big, what it saw, how it scored."""

from __future__ import annotations

import json
import logging
from typing import Any

from .model_config import OphCLIPConfig

logger = logging.getLogger(__name__)


def _describe_vision(cfg: Any) -> str:
    if isinstance(cfg.layers, (tuple, list)):
        return f"open_clip ModifiedResNet, layers {list(cfg.layers)}, width {cfg.width}, input {cfg.image_size} px"
    return (
        f"open_clip VisionTransformer, {cfg.layers} layers, width {cfg.width}, patch {cfg.patch_size}, "
        f"input {cfg.image_size} px"
    )


def _describe_text(config: OphCLIPConfig) -> str:
    text = config.text_cfg
    if config.text_type == "hf":
        proj = "linear projection" if text.proj_type == "linear" else "no projection"
        return f"Hugging Face `{text.hf_model_name}`, {text.pooler} pooling, {proj}, context {text.context_length} tokens"
    return f"open_clip text transformer, {text.layers} layers, width {text.width}, context {text.context_length} tokens"


def _markdown_table(rows: dict[str, Any]) -> list[str]:
    lines = ["| key | value |", "|---|---|"]
    for key, value in rows.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"| {key} | {shown} |")
    return lines


def render_model_card(
    config: OphCLIPConfig, parameters: dict[str, int], training_info: dict[str, Any] | None = None
) -> str:
    """Markdown model card. ``training_info`` may hold ``data``, ``metrics`` (a mapping) and any other keys."""
    info = dict(training_info or {})
    name = config.model_name or "OphCLIP model"
    temporal = config.temporal_cfg
    pooling = (
        "mean over frames"
        if temporal.pool == "mean"
        else f"temporal transformer ({temporal.layers} layers, {temporal.heads} heads)"
    )
    scale = (
        f"learnable, init 1/{config.init_temperature:g}, clamped at {config.max_logit_scale:g}"
        if config.logit_scale_learnable
        else f"fixed at 1/{config.init_temperature:g}"
    )
    lines = [
        "---",
        "library_name: ophclip",
        "tags: [ophthalmology, surgical-video, clip, vision-language]",
        "---",
        f"# {name}",
        "",
        "Dual encoder for ophthalmic surgery video (OphCLIP: hierarchical, retrieval-augmented contrastive pretraining).",
        "",
        "## Architecture",
        f"- embedding size: {config.embed_dim}",
        f"- vision tower: {_describe_vision(config.vision_cfg)}",
        f"- text tower: {_describe_text(config)}{' (frozen)' if config.text_frozen else ''}",
        f"- temporal pooling: {pooling}",
        f"- logit scale: {scale}",
        f"- preprocessing: resize + centre crop to {config.preprocess_cfg.image_size} px, "
        f"{config.preprocess_cfg.interpolation}, mean {list(config.preprocess_cfg.mean)}, std {list(config.preprocess_cfg.std)}",
        "",
        "## Parameters",
        *_markdown_table({k: f"{v:,}" for k, v in parameters.items()}),
        "",
        "## Training data",
        str(info.pop("data", "not recorded")),
        "",
        "## Metrics",
    ]
    metrics = info.pop("metrics", None)
    lines += _markdown_table(metrics) if metrics else ["none recorded"]
    if info:
        lines += ["", "## Training details", *_markdown_table(info)]
    lines += [
        "",
        "## Usage",
        "```python",
        "import ophclip",
        "model, _, preprocess = ophclip.create_model_and_transforms(<this folder>)",
        "tokenizer = ophclip.get_tokenizer(<this folder>)",
        "video = model.encode_video(preprocess(frames).unsqueeze(0), normalize=True)  # frames: uint8 (T, H, W, 3)",
        'text = model.encode_text(tokenizer(["phacoemulsification"]), normalize=True)',
        "```",
        "",
    ]
    return "\n".join(lines)
