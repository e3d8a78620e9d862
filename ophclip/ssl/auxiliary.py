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

from data_pipeline.frame_cache import FrameCache

from ..data import LevelBatchSampler
from ..errors import ConfigError
from ..schedule import cosine_between
from .config import HeadSection, SSLLossSection
from .head import ClipEncoder, DINOHead, ema_update
from .loss import SSLLoss, teacher_temperature
from .views import MultiCropVideoViews, collate_views, ssl_video_ids, view_transforms

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


class SilentPoolSSL:
    """The pretraining trainer's side of the auxiliary loss: views of the silent pool, the loss, its state.

    ``loss(tower, step)`` draws step ``step``'s views (a pure function of the seed and the
    step, so a resumed run draws the same ones; this rank's share under DDP) and returns the
    unweighted loss; ``after_step(tower, step)`` moves the EMA teacher.
    """

    def __init__(self, cfg: Any, root: str, tower: nn.Module, model_config: Any, total_steps: int,
                 *, seed: int, exclude_splits: list[str], rank: int = 0, world_size: int = 1):
        if cfg.batch_size % world_size:
            raise ConfigError(f"ssl_aux.batch_size = {cfg.batch_size} must divide by the world size {world_size}")
        g_tf, l_tf = view_transforms(model_config.preprocess_cfg, cfg.views)
        ids = ssl_video_ids(root, cfg.kinds, exclude_splits)
        self.views = MultiCropVideoViews(ids, FrameCache(root), cfg.views, g_tf, l_tf)
        # Its own seed, so the auxiliary clips do not follow the video level's order.
        self.sampler = LevelBatchSampler(len(self.views), cfg.batch_size, seed=seed + 7919, level="video")
        self.rank, self.world_size = rank, world_size
        self.aux = AuxiliarySSLLoss(tower, model_config.embed_dim, total_steps, cfg.head, cfg.loss, cfg.teacher_momentum)

    def parameters(self):
        return self.aux.parameters()

    def to(self, device: torch.device) -> SilentPoolSSL:
        self.aux.to(device)
        return self

    def loss(self, tower: nn.Module, step: int) -> torch.Tensor:
        keys = self.sampler.global_batch_keys(step)
        local = len(keys) // self.world_size
        views = collate_views([self.views[k] for k in keys[self.rank * local : (self.rank + 1) * local]])
        return self.aux(tower, views, step)

    def after_step(self, tower: nn.Module, step: int) -> None:
        self.aux.update_teacher(tower, step)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.aux.state_dict(), "teacher": self.aux.teacher_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aux.load_state_dict(state["module"])
        self.aux.load_teacher_state(state["teacher"])
