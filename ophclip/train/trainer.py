"""``Trainer``: OphCLIP pretraining, the engine running the hierarchical contrastive objective.

    trainer = Trainer(cfg, resume="latest")
    summary = trainer.fit()

Multi-process: ``torchrun --nproc_per_node=N -m ophclip.train CONFIG [overrides]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..distributed import DistInfo, init_distributed, shutdown
from ..memory import RetrievalHook
from .config import PretrainConfig, validate
from .engine import Engine, EngineSettings, delegate, seed_everything
from .objectives.contrastive import Components, ContrastiveObjective


def engine_settings(cfg: PretrainConfig) -> EngineSettings:
    t = cfg.train
    return EngineSettings(
        output_dir=t.output_dir, steps=t.steps, lr=t.lr, seed=t.seed, min_lr_ratio=t.min_lr_ratio,
        warmup_steps=t.warmup_steps, betas=tuple(t.betas), eps=t.eps, grad_clip_norm=t.grad_clip_norm,
        accum_freq=t.accum_freq, precision=t.precision, save_every=t.save_every, log_every=cfg.log.every,
        tensorboard=cfg.log.tensorboard, jsonl=cfg.log.jsonl,
    )


class Trainer(Engine):
    """Hierarchical clip/video contrastive pretraining of one model on one dataset root.

    Args:
        cfg: the run config (validated here against the world size).
        resume: ``"latest"`` (the run's latest checkpoint if any), ``"best"``, a checkpoint
            path, or None for a fresh run.
        components: model, tokenizer and transforms; built from ``cfg.model`` when None.
        loss: ``loss(level, features, logit_scale, neighbours) -> dict`` with a ``"total"`` entry.
        retrieval: the memory-bank hook (:class:`ophclip.memory.RetrievalHook`).
        dist: process-group info; read from torchrun's environment when None.
    """

    objective: ContrastiveObjective

    def __init__(self, cfg: PretrainConfig, *, resume: str | Path | None = None, components: Components | None = None,
                 loss: Callable[..., dict[str, torch.Tensor]] | None = None, retrieval: RetrievalHook | None = None,
                 dist: DistInfo | None = None):
        dist = dist or init_distributed(cfg.train.device)
        validate(cfg, dist.world_size)
        self.cfg = cfg
        # Same seed on every rank for the model's init (DDP also broadcasts rank 0's weights).
        seed_everything(cfg.train.seed)
        objective = ContrastiveObjective(cfg, dist, components=components, loss=loss, retrieval=retrieval)
        super().__init__(objective, engine_settings(cfg), config=cfg, resume=resume, dist=dist)

    # The objective's parts, by the names the first trainer gave them.
    model = delegate("model")
    components = delegate("components")
    levels = delegate("levels")
    text_cache = delegate("text_cache")
    retrieval = delegate("retrieval")
    ssl_aux = delegate("ssl_aux")
    schedule = delegate("schedule", "The level schedule; a benchmark may pin one level.")

    def next_batch(self, level: str) -> dict[str, Any]:
        """The next batch of ``level`` for this rank; advances the level's data position."""
        return self.objective.level_batch(level)

    def forward_backward(self, level: str | dict[str, Any], batch: dict[str, Any] | None = None) -> dict[str, float]:
        """``forward_backward(level, batch)``: accumulate ``level``'s gradient on ``batch`` (see :class:`Engine`)."""
        if batch is None:  # called by the engine with the batch only
            return super().forward_backward(level)
        self.objective.level = level
        return super().forward_backward(batch)


def pretrain(cfg: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) pretraining as the config says; return the summary.

    Under torchrun this joins the process group first and leaves it at the end.
    """
    info = init_distributed(cfg.train.device)
    try:
        return Trainer(cfg, resume=resume, dist=info).fit(progress=progress)
    finally:
        shutdown(info)
