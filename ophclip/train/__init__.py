"""Training: the only part of ophclip that knows about loops, optimizers and checkpoints.

One engine (:mod:`.engine`) runs every objective (:mod:`.objectives`): OphCLIP's
hierarchical contrastive pretraining, SSL self-distillation of a vision tower, and
teacher -> student distillation.

    from ophclip.config import load_config
    from ophclip.train import PretrainConfig, Trainer

    cfg = load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["data.root=out/dataset"])
    summary = Trainer(cfg, resume="latest").fit()

Multi-process: ``torchrun --nproc_per_node=N -m ophclip.train CONFIG [overrides]``
(or ``torchrun ... $(which ophclip) pretrain CONFIG``).
"""

from ..memory import NoRetrieval, RetrievalHook
from .config import PretrainConfig, validate
from .engine import Engine, EngineSettings, Objective, TrainingDivergedError
from .objectives.contrastive import Components, ContrastiveObjective, build_components
from .objectives.distill import DistillObjective, DistillResult, DistillTrainer, distill
from .objectives.ssl import SSLObjective, SSLTrainer, run_ssl
from .trainer import Trainer, pretrain

__all__ = [
    "Components",
    "ContrastiveObjective",
    "DistillObjective",
    "DistillResult",
    "DistillTrainer",
    "Engine",
    "EngineSettings",
    "NoRetrieval",
    "Objective",
    "PretrainConfig",
    "RetrievalHook",
    "SSLObjective",
    "SSLTrainer",
    "Trainer",
    "TrainingDivergedError",
    "build_components",
    "distill",
    "pretrain",
    "run_ssl",
    "validate",
]
