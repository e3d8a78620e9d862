"""Self-supervised losses: DINO self-distillation (default) and an InfoNCE option, one module.

``SSLLoss(cfg)`` is called as ``loss(student, teacher, teacher_temp)`` where ``student`` and
``teacher`` are dicts with ``"logits"`` (one (B, K) tensor per view) and ``"z"`` (one
L2-normalised (B, d) tensor per view); the teacher's lists hold the global views only, the
student's the global views first, then the local ones.

* ``method="dino"`` (Caron et al. 2021; SVT, Ranasinghe et al. 2022): the teacher's
  prototype scores are *centred* (an EMA ``c`` of their batch mean is subtracted) and
  *sharpened* (softmax at a low temperature); every student view predicts every teacher
  view except its own: ``H(P_t(x_i), P_s(x_j))`` averaged over pairs ``i != j``. After each
  call, ``c <- m c + (1 - m) mean(teacher logits over the batch and global views)``.
* ``method="infonce"`` (MoCo v3): the student's bottleneck of global view 1 must find the
  teacher's bottleneck of view 2 of the same clip among the batch, and the reverse.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import SSLLossSection

logger = logging.getLogger(__name__)


def teacher_temperature(step: int, cfg: SSLLossSection) -> float:
    """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over ``warmup_teacher_temp_steps``."""
    n = cfg.warmup_teacher_temp_steps
    if n > 0 and step < n:
        return cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * step / n
    return cfg.teacher_temp


class SSLLoss(nn.Module):
    def __init__(self, cfg: SSLLossSection, out_dim: int):
        super().__init__()
        self.cfg = cfg
        self.method = cfg.method
        self.register_buffer("center", torch.zeros(1, out_dim))
        # DINO's cross-entropy is H(teacher) + KL(teacher || student); the teacher's entropy
        # moves as centring and sharpening act, so the KL part is the learning signal to watch.
        self.last_teacher_entropy: float = float("nan")

    def forward(self, student: dict, teacher: dict, teacher_temp: float) -> torch.Tensor:
        if self.method == "dino":
            return self.dino(student["logits"], teacher["logits"], teacher_temp)
        return self.infonce(student["z"], teacher["z"])

    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Centred and sharpened teacher distribution."""
        return F.softmax((teacher_logits - self.center) / teacher_temp, dim=-1)

    def dino(
        self, student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], teacher_temp: float
    ) -> torch.Tensor:
        targets = [self.teacher_probs(t.detach(), teacher_temp) for t in teacher_logits]
        with torch.no_grad():
            entropies = [-(q * q.clamp_min(1e-12).log()).sum(-1).mean() for q in targets]
            self.last_teacher_entropy = float(torch.stack(entropies).mean())
        log_preds = [F.log_softmax(s / self.cfg.student_temp, dim=-1) for s in student_logits]
        total, terms = student_logits[0].new_zeros(()), 0
        for i, q in enumerate(targets):
            for j, logp in enumerate(log_preds):
                if i == j:
                    continue  # a view does not predict itself
                total = total + torch.sum(-q * logp, dim=-1).mean()
                terms += 1
        self.update_center(torch.cat([t.detach() for t in teacher_logits]))
        return total / terms

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        batch_sum = teacher_logits.sum(0, keepdim=True)
        count = torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(batch_sum / count, alpha=1 - m)

    def infonce(self, student_z: list[torch.Tensor], teacher_z: list[torch.Tensor]) -> torch.Tensor:
        labels = torch.arange(student_z[0].shape[0], device=student_z[0].device)
        tau = self.cfg.infonce_temp
        a = F.cross_entropy(student_z[0] @ teacher_z[1].detach().T / tau, labels)
        b = F.cross_entropy(student_z[1] @ teacher_z[0].detach().T / tau, labels)
        return (a + b) / 2
