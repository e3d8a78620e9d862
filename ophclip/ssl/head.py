"""DINO projection head and the backbone wrapper that turns clips into one feature each.

Head (DINO): ``layers``-deep MLP (GELU) -> bottleneck -> L2 normalisation -> a
weight-normalised linear prototype layer (no bias). The prototype layer stores a direction
``v`` per prototype and, unless ``norm_last_layer``, a learnable norm ``g``; its weight is
``g * v / ||v||`` (Salimans & Kingma's weight normalisation, as DINO's ``weight_norm``),
written out here so the EMA teacher averages plain tensors.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

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
