"""Typed pretraining config: ``configs/pretrain_*.yaml`` maps onto :class:`PretrainConfig`.

    cfg = load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["train.lr=3e-4"])
    validate(cfg)

The dataclasses hold data only. :func:`validate` checks the values that the type system
cannot (positive sizes, divisibility of batches across ranks and accumulation steps) and
names the offending key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..config import LogSection
from ..data import LEVELS, DataSection
from ..errors import ConfigError, ModelError
from ..loss import LossCfg
from ..memory import RetrievalCfg
from ..ssl.config import HeadSection, SSLLossSection, ViewsSection

logger = logging.getLogger(__name__)


@dataclass
class ModelSection:
    name: str = "OphCLIP-tiny-MiniLM"
    # None (random init / the model config's own defaults), a save_pretrained folder, or "openai".
    pretrained: str | None = None
    # A JSON model config to register first (its file stem becomes a model name), for
    # architectures that are not shipped in ophclip/model_configs/.
    config_file: str | None = None
    # Freeze the text tower (None: the model config decides). A frozen tower's embedding of
    # every unique sentence is computed once and cached: a step then costs only the vision tower.
    freeze_text: bool | None = None
    grad_checkpointing: bool = False
    # Start the vision tower from `ophclip ssl` output (its vision/ folder) or a save_pretrained folder.
    init_vision_from: str | None = None
    # open_clip's --lock-image: freeze the vision tower except its last N layer groups
    # (a timm trunk's projection head always trains). See OphCLIP.lock_image_tower.
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    # BatchNorm layers of the vision tower keep their (pretrained) running statistics while training;
    # works with or without lock_image.
    freeze_bn_stats: bool = False
    # Input size in pixels, overriding the model config's (null: the config's). A CNN tower takes any
    # size; ImageNet features degrade below ~128 px and the step time grows with the pixel count.
    image_size: int | None = None



@dataclass
class TrainSection:
    output_dir: str = "runs/pretrain"
    seed: int = 0
    steps: int = 1000  # optimizer steps, both levels together
    # Global batch sizes (over all ranks), so a run's data order does not depend on the world size.
    clip_batch_size: int = 64
    video_batch_size: int = 8
    # One video-level step after every N clip-level steps; 0 trains the clip level only.
    video_every: int = 4
    # Split each rank's batch into this many micro-batches; features are cached and
    # recomputed (open_clip's --accum-freq), so the gradient equals the full batch's.
    accum_freq: int = 1
    lr: float = 5e-4
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip_norm: float | None = None
    # auto: bf16 autocast on a GPU that supports it, fp16 + GradScaler on older GPUs, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"  # auto | cpu | cuda
    save_every: int = 100  # steps between checkpoints (latest.pt, and best.pt when it improves)


@dataclass
class SSLAuxSection:
    """An auxiliary self-supervised (DINO) loss on silent-pool clips during pretraining (OVFM's idea).

    On every clip-level step, ``batch_size`` videos of kind ``kinds`` give multi-crop views
    (``views``, as in ``ophclip ssl``); the model's own vision tower is the student, an EMA copy
    the teacher, and ``weight * loss`` joins the step's contrastive loss. ``weight: 0`` is off.
    """

    weight: float = 0.0
    batch_size: int = 8
    kinds: list[str] = field(default_factory=lambda: ["silent"])
    teacher_momentum: float = 0.996  # cosine from this to 1.0 over train.steps
    views: ViewsSection = field(default_factory=lambda: ViewsSection(local_views=2))
    head: HeadSection = field(default_factory=lambda: HeadSection(hidden_dim=256, out_dim=256))
    loss: SSLLossSection = field(default_factory=SSLLossSection)


@dataclass
class PretrainConfig:
    # Keys that moved: the memory bank's settings and the retrieval loss flags are one section now.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "loss.retrieval_mode": "retrieval.mode",
        "loss.retrieval_weight": "retrieval.weight",
        "loss.retrieval_temperature": "retrieval.temperature",
        "loss.retrieval_mix": "retrieval.mix",
        "memory": "retrieval",
    }

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    # ophclip.loss.LossCfg: term weights, repeated-text handling, retrieval mode, local_loss.
    loss: LossCfg = field(default_factory=LossCfg)
    # ophclip.memory.RetrievalCfg: the silent-video memory bank and the loss term it feeds.
    retrieval: RetrievalCfg = field(default_factory=RetrievalCfg)
    ssl_aux: SSLAuxSection = field(default_factory=SSLAuxSection)
    log: LogSection = field(default_factory=LogSection)


def validate(cfg: PretrainConfig, world_size: int = 1) -> None:
    """Raise :class:`ConfigError` naming the key whose value cannot work."""
    d, t = cfg.data, cfg.train
    positive = {
        "data.clip_frames": d.clip_frames,
        "data.video_frames": d.video_frames,
        "data.max_narrations_per_video": d.max_narrations_per_video,
        "train.steps": t.steps,
        "train.clip_batch_size": t.clip_batch_size,
        "train.video_batch_size": t.video_batch_size,
        "train.accum_freq": t.accum_freq,
        "train.save_every": t.save_every,
        "log.every": cfg.log.every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} = {value}; it must be at least 1")
    if cfg.model.lock_image_unlocked_groups < 0:
        raise ConfigError(f"model.lock_image_unlocked_groups = {cfg.model.lock_image_unlocked_groups}; it must be >= 0")
    if cfg.model.lock_image_unlocked_groups and not cfg.model.lock_image:
        raise ConfigError("model.lock_image_unlocked_groups is set but model.lock_image is false; set model.lock_image=true")
    if not d.root:
        raise ConfigError("data.root is empty; set it to a dataset root, e.g. data.root=out/dataset")
    lo, hi = d.clip_window_s
    if not 0 < lo <= hi:
        raise ConfigError(f"data.clip_window_s = [{lo}, {hi}]; expected 0 < min <= max seconds")
    if t.video_every < 0:
        raise ConfigError(f"train.video_every = {t.video_every}; use 0 (clip level only) or N >= 1")
    if t.lr <= 0 or not 0 <= t.min_lr_ratio <= 1 or t.warmup_steps < 0:
        raise ConfigError("train.lr must be > 0, train.min_lr_ratio in [0, 1] and train.warmup_steps >= 0")
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers = {d.num_workers}; it must be >= 0")
    for level in LEVELS:
        key = f"train.{level}_batch_size"
        size = getattr(t, f"{level}_batch_size")
        if size % (world_size * t.accum_freq):
            raise ConfigError(
                f"{key} = {size} is a global batch; it must divide evenly by world size x train.accum_freq "
                f"= {world_size} x {t.accum_freq}"
            )
    try:
        cfg.loss.validate()
    except ModelError as e:
        raise ConfigError(str(e)) from None
    cfg.retrieval.validate()
    if cfg.ssl_aux.weight < 0 or cfg.ssl_aux.batch_size < 1:
        raise ConfigError(
            f"ssl_aux.weight = {cfg.ssl_aux.weight} and ssl_aux.batch_size = {cfg.ssl_aux.batch_size}; "
            "expected weight >= 0 (0 is off) and batch_size >= 1"
        )
    weights = ("clip_weight", "video_title_weight", "video_narration_weight")
    for name in weights:
        if getattr(cfg.loss, name) < 0:
            raise ConfigError(f"loss.{name} = {getattr(cfg.loss, name)}; loss weights must be >= 0")
