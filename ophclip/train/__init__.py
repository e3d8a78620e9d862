"""Pretraining: the only part of ophclip that knows about loops, optimizers and checkpoints.

    from ophclip.config import load_config
    from ophclip.train import PretrainConfig, Trainer

    cfg = load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["data.root=out/dataset"])
    summary = Trainer(cfg, resume="latest").fit()

Multi-process: ``torchrun --nproc_per_node=N -m ophclip.train CONFIG [overrides]``
(or ``torchrun ... $(which ophclip) pretrain CONFIG``).
"""

from .config import PretrainConfig, validate
from .hooks import NoRetrieval, RetrievalHook
from .trainer import Components, Trainer, TrainingDivergedError, pretrain

__all__ = [
    "Components",
    "NoRetrieval",
    "PretrainConfig",
    "RetrievalHook",
    "Trainer",
    "TrainingDivergedError",
    "pretrain",
    "validate",
]
