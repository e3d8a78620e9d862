"""An optional auxiliary SSL loss on silent-pool clips during OphCLIP pretraining (weight lambda, off by default).

The model's own vision tower is the student; this object owns a DINO head, an EMA teacher
(a copy of the tower plus head, never trained by gradient) and the centred DINO loss.
The trainer adds ``aux.parameters()`` (the head) to its optimizer and, per step::

    views = aux_views.batch(...)                    # MultiCropVideoViews on the silent pool
    loss = loss + cfg.ssl_weight * aux(model.visual, views, step)
    ...optimizer.step()...
    aux.update_teacher(model.visual, step)
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from .config import HeadSection, SSLLossSection
from .head import ClipEncoder, DINOHead
from .loss import SSLLoss, teacher_temperature
from .trainer import cosine_between, ema_update

logger = logging.getLogger(__name__)


class AuxiliarySSLLoss(nn.Module):
    """``aux(tower, views, step)`` -> scalar DINO (or InfoNCE) loss; gradients reach ``tower`` and the head."""

    def __init__(
        self,
        tower: nn.Module,
        embed_dim: int,
        total_steps: int,
        head: HeadSection | None = None,
        loss: SSLLossSection | None = None,
        teacher_momentum: float = 0.996,
    ):
        super().__init__()
        head = head or HeadSection()
        self.loss_cfg = loss or SSLLossSection()
        self.head = DINOHead(embed_dim, head)
        self.loss = SSLLoss(self.loss_cfg, head.out_dim)
        # The teacher is kept outside the module tree so .parameters() and state_dict() of the
        # trainer's model never see it twice; its state is saved with teacher_state().
        self._teacher = [copy.deepcopy(ClipEncoder(tower, self.head)).requires_grad_(False)]
        self.total_steps, self.teacher_momentum = total_steps, teacher_momentum

    @property
    def teacher(self) -> ClipEncoder:
        return self._teacher[0]

    def forward(self, tower: nn.Module, views: dict[str, Any], step: int) -> torch.Tensor:
        student = ClipEncoder(tower, self.head)
        device = next(self.head.parameters()).device
        self.teacher.to(device)
        glob = [v.to(device) for v in views["global"]]
        local = [v.to(device) for v in views["local"]]
        with torch.no_grad():
            t_out = [self.teacher(v) for v in glob]
        s_out = [student(v) for v in glob + local]
        return self.loss(
            {"logits": [o[1] for o in s_out], "z": [o[2] for o in s_out]},
            {"logits": [o[1] for o in t_out], "z": [o[2] for o in t_out]},
            teacher_temperature(step, self.loss_cfg),
        )

    def update_teacher(self, tower: nn.Module, step: int) -> None:
        m = cosine_between(self.teacher_momentum, 1.0, step, self.total_steps)
        ema_update(self.teacher, ClipEncoder(tower, self.head), m)

    def teacher_state(self) -> dict[str, torch.Tensor]:
        return self.teacher.state_dict()

    def load_teacher_state(self, state: dict[str, torch.Tensor]) -> None:
        self.teacher.load_state_dict(state)
