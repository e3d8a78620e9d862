"""DINO projection head and the backbone wrapper that turns clips into one feature each.

Head (DINO): ``layers``-deep MLP (GELU) -> bottleneck -> L2 normalisation -> a
weight-normalised linear prototype layer (no bias). The prototype layer stores a direction
``v`` per prototype and, unless ``norm_last_layer``, a learnable norm ``g``; its weight is
``g * v / ||v||`` (Salimans & Kingma's weight normalisation, as DINO's ``weight_norm``),
written out here so the EMA teacher averages plain tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.model import _build_vision_tower
from torch import nn

from ..errors import ConfigError
from ..factory import add_model_config, get_model_config, list_models
from .config import HeadSection

logger = logging.getLogger(__name__)


class PrototypeLayer(nn.Module):
    """Weight-normalised linear layer without bias: ``x @ (g * v / ||v||).T``."""

    def __init__(self, in_dim: int, out_dim: int, norm_fixed: bool = True):
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.v, std=0.02)
        self.g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_fixed)

    @property
    def weight(self) -> torch.Tensor:
        return self.g * F.normalize(self.v, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """``(N, in_dim)`` -> (prototype logits ``(N, out_dim)``, L2-normalised bottleneck ``(N, bottleneck_dim)``)."""

    def __init__(self, in_dim: int, cfg: HeadSection):
        super().__init__()
        dims = [in_dim] + [cfg.hidden_dim] * (cfg.layers - 1) + [cfg.bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = PrototypeLayer(cfg.bottleneck_dim, cfg.out_dim, norm_fixed=cfg.norm_last_layer)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.normalize(self.mlp(x), dim=-1)
        return self.prototypes(z), z


class ClipEncoder(nn.Module):
    """A vision tower applied per frame, mean-pooled over time, then the head.

    ``forward(clips)`` takes ``(B, T, 3, S, S)`` and returns ``(features (B, D), logits, z)``.
    With ``progress=True`` it also holds :attr:`progress`, a linear layer from the features
    to one logit: where in its video the clip lies (the progress pretext).
    """

    def __init__(self, backbone: nn.Module, head: DINOHead, progress: bool = False, feature_dim: int = 0):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.progress = nn.Linear(feature_dim, 1) if progress else None

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        return self.backbone(clips.flatten(0, 1)).view(b, t, -1).mean(1)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.features(clips)
        logits, z = self.head(feats)
        return feats, logits, z


def build_vision_tower(name: str, config_file: str | None = None) -> tuple[nn.Module, Any]:
    """The vision tower of registry model ``name`` (random init) and the model's config."""
    if config_file:
        if not Path(config_file).is_file():
            raise ConfigError(f"model.config_file = {config_file!r} does not exist; give a JSON model config")
        add_model_config(config_file)
    if name not in list_models():
        raise ConfigError(
            f"model.name = {name!r} is not a known model; known models: {', '.join(list_models())}"
        )
    config = get_model_config(name)
    return _build_vision_tower(config.embed_dim, config.vision_cfg, config.quick_gelu), config


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``t <- m t + (1 - m) s`` for every parameter; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)
