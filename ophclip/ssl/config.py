"""Typed self-supervised pretraining config: ``configs/ssl_*.yaml`` maps onto :class:`SSLConfig`.

    cfg = load_config(SSLConfig, "configs/ssl_tiny.yaml", ["train.steps=200"])
    validate(cfg)

The dataclasses hold data only; :func:`validate` checks the values the types cannot and
names the offending key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from ..config import LogSection
from ..errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class SSLModelSection:
    name: str = "OphCLIP-tiny-MiniLM"  # a registry model; only its vision tower is built and trained
    config_file: str | None = None  # a JSON model config to register first (as in pretraining)
    # Start from these vision weights: a folder written by this command (vision/), or an
    # OphCLIP save_pretrained folder. None: random init.
    init_from: str | None = None


@dataclass
class ViewsSection:
    """Multi-crop clip views (SVT): each view is a short clip at its own temporal span and spatial crop.

    A view's span (seconds) is drawn uniformly in ``*_span_s`` and its frames are spread
    evenly over it, so views with the same frame count differ in temporal rate. Local views
    have the tower's input size too (a ViT's position embedding fixes it); they differ from
    global views by a smaller crop (``local_crop_scale``), fewer frames and a shorter span.
    """

    global_views: int = 2
    local_views: int = 4
    global_frames: int = 4
    local_frames: int = 2
    global_span_s: tuple[float, float] = (2.0, 6.0)
    local_span_s: tuple[float, float] = (0.5, 2.0)
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    # All views of a sample inside one window of this many seconds (None: anywhere in the
    # video, as SVT). Keep it shorter than a typical phase so the views share one step.
    window_s: float | None = None
    hflip_prob: float = 0.5
    color_jitter: float = 0.4
    hue: float = 0.0


@dataclass
class SSLDataSection:
    root: str = ""  # dataset root with videos.parquet + frames/ (text is never read)
    kinds: list[str] = field(default_factory=lambda: ["silent", "narrated"])
    # Videos whose videos.parquet `split` (when the column exists) is listed here are held out,
    # as in pretraining (train.data.exclude_splits): evaluation videos stay unseen.
    exclude_splits: list[str] = field(default_factory=lambda: ["eval"])
    # Items drawn from each video per epoch, kept together in runs within a batch (as
    # pretraining's data.clips_per_video). With InfoNCE the other moments of the same surgery
    # become negatives, so the features must tell its steps apart, not just its video.
    clips_per_video: int = 1
    views: ViewsSection = field(default_factory=ViewsSection)


@dataclass
class HeadSection:
    """DINO projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes."""

    hidden_dim: int = 512
    bottleneck_dim: int = 128
    out_dim: int = 1024  # number of prototypes
    layers: int = 3
    norm_last_layer: bool = True  # prototype norms fixed to 1 (DINO's stabiliser for ViTs)


@dataclass
class SSLLossSection:
    method: Literal["dino", "infonce"] = "dino"
    student_temp: float = 0.1
    teacher_temp: float = 0.04  # final teacher temperature (sharpening)
    warmup_teacher_temp: float = 0.04  # linear warm-up from this ...
    warmup_teacher_temp_steps: int = 0  # ... over these steps
    center_momentum: float = 0.9
    infonce_temp: float = 0.2  # method=infonce: MoCo-v3-style InfoNCE, student queries vs EMA-teacher keys
    # > 0: each global view's feature also predicts where the view lies in its video (centre
    # time / duration) through a linear layer; binary cross-entropy on that fraction, times
    # this weight. A surgery's steps come in order, so its progress is a free proxy for its
    # phase (remaining-surgery-duration pretraining, Yengera et al. 2018; Twinanda et al. 2019).
    progress_weight: float = 0.0


@dataclass
class SSLTrainSection:
    output_dir: str = "runs/ssl"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32  # clips per step (each yields every view)
    lr: float = 5e-4
    min_lr_ratio: float = 0.01
    warmup_steps: int = 50
    weight_decay: float = 0.04  # cosine from weight_decay to weight_decay_end (DINO)
    weight_decay_end: float = 0.4
    teacher_momentum: float = 0.996  # cosine from this to 1.0
    grad_clip_norm: float | None = 3.0
    freeze_last_layer_steps: int = 0  # prototypes get no update during the first N steps
    device: str = "auto"  # auto | cpu | cuda
    save_every: int = 100


@dataclass
class MonitorSection:
    """Collapse monitoring (logged every ``every`` steps).

    ``feature_std_ratio`` is the batch std of the L2-normalised teacher backbone features
    times sqrt(D): about 1 for well-spread features, 0 when every clip maps to one point.
    ``entropy_ratio`` is the mean teacher output entropy over log(K): 1 is the uniform
    collapse, near 0 with a low feature std is the one-prototype collapse. A check counts as
    collapsed when the spread is below ``min_feature_std_ratio`` or (DINO) the entropy ratio
    is above ``max_entropy_ratio``.
    """

    every: int = 10
    min_feature_std_ratio: float = 0.05
    max_entropy_ratio: float = 0.995
    patience: int = 3  # consecutive collapsed checks before acting
    on_collapse: Literal["warn", "error"] = "warn"
    # kNN accuracy on a labelled probe set: a table (csv/parquet) of video_id, time_s, label
    # whose videos are in the frame cache of ``probe_root`` (default: data.root).
    probe_labels: str | None = None
    probe_root: str | None = None
    probe_every: int = 100
    probe_k: int = 5
    probe_max_frames: int = 2000


@dataclass
class SSLConfig:
    model: SSLModelSection = field(default_factory=SSLModelSection)
    data: SSLDataSection = field(default_factory=SSLDataSection)
    head: HeadSection = field(default_factory=HeadSection)
    loss: SSLLossSection = field(default_factory=SSLLossSection)
    train: SSLTrainSection = field(default_factory=SSLTrainSection)
    monitor: MonitorSection = field(default_factory=MonitorSection)
    log: LogSection = field(default_factory=LogSection)  # the same logging section as pretraining


def _check_range(key: str, pair: tuple[float, float], lo: float, hi: float | None = None) -> None:
    a, b = pair
    if not (lo < a <= b and (hi is None or b <= hi)):
        bound = f"{lo} < min <= max" + (f" <= {hi}" if hi is not None else "")
        raise ConfigError(f"{key} = [{a}, {b}]; expected {bound}")


def validate(cfg: SSLConfig) -> None:
    """Raise :class:`ConfigError` naming the key whose value cannot work."""
    v, t, h, lo = cfg.data.views, cfg.train, cfg.head, cfg.loss
    positive = {
        "data.views.global_views": v.global_views,
        "data.views.global_frames": v.global_frames,
        "data.views.local_frames": v.local_frames,
        "head.hidden_dim": h.hidden_dim,
        "head.bottleneck_dim": h.bottleneck_dim,
        "head.out_dim": h.out_dim,
        "head.layers": h.layers,
        "train.steps": t.steps,
        "train.batch_size": t.batch_size,
        "data.clips_per_video": cfg.data.clips_per_video,
        "train.save_every": t.save_every,
        "monitor.every": cfg.monitor.every,
        "monitor.patience": cfg.monitor.patience,
        "monitor.probe_k": cfg.monitor.probe_k,
        "log.every": cfg.log.every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} = {value}; it must be at least 1")
    if not cfg.data.root:
        raise ConfigError("data.root is empty; set it to a dataset root, e.g. data.root=out/dataset")
    if v.local_views < 0:
        raise ConfigError(f"data.views.local_views = {v.local_views}; it must be >= 0")
    if lo.method == "dino" and v.global_views + v.local_views < 2:
        raise ConfigError(
            "DINO needs at least two views: raise data.views.global_views or data.views.local_views"
        )
    if lo.method == "infonce" and v.global_views != 2:
        raise ConfigError(
            f"loss.method = infonce contrasts two clips; set data.views.global_views=2 (got {v.global_views})"
        )
    if v.window_s is not None and v.window_s <= 0:
        raise ConfigError(f"data.views.window_s = {v.window_s}; it must be > 0 seconds, or null for the whole video")
    _check_range("data.views.global_span_s", v.global_span_s, 0.0)
    _check_range("data.views.local_span_s", v.local_span_s, 0.0)
    _check_range("data.views.global_crop_scale", v.global_crop_scale, 0.0, 1.0)
    _check_range("data.views.local_crop_scale", v.local_crop_scale, 0.0, 1.0)
    unknown = sorted(set(cfg.data.kinds) - {"silent", "narrated"})
    if unknown or not cfg.data.kinds:
        raise ConfigError(f"data.kinds = {cfg.data.kinds}; use a non-empty subset of [silent, narrated]")
    for key in ("student_temp", "teacher_temp", "warmup_teacher_temp", "infonce_temp"):
        if getattr(lo, key) <= 0:
            raise ConfigError(f"loss.{key} = {getattr(lo, key)}; temperatures must be > 0")
    if lo.progress_weight < 0:
        raise ConfigError(f"loss.progress_weight = {lo.progress_weight}; it must be >= 0 (0 turns the pretext off)")
    if not 0 <= lo.center_momentum < 1:
        raise ConfigError(f"loss.center_momentum = {lo.center_momentum}; expected 0 <= m < 1")
    if not 0 <= t.teacher_momentum <= 1:
        raise ConfigError(f"train.teacher_momentum = {t.teacher_momentum}; expected a value in [0, 1]")
    if t.lr <= 0 or not 0 <= t.min_lr_ratio <= 1 or t.warmup_steps < 0:
        raise ConfigError("train.lr must be > 0, train.min_lr_ratio in [0, 1] and train.warmup_steps >= 0")
    if t.weight_decay < 0 or t.weight_decay_end < 0:
        raise ConfigError("train.weight_decay and train.weight_decay_end must be >= 0")
    if cfg.monitor.min_feature_std_ratio < 0:
        raise ConfigError("monitor.min_feature_std_ratio must be >= 0")
    if not 0 < cfg.monitor.max_entropy_ratio <= 1:
        raise ConfigError(
            f"monitor.max_entropy_ratio = {cfg.monitor.max_entropy_ratio}; expected a value in (0, 1]"
        )
