"""The evaluation configs (data only): ``ophclip zeroshot`` and ``ophclip probe``, configs/eval_*.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..datasets.config import BenchmarkConfig
from ..metrics import DEFAULT_TOOL_THRESHOLD


@dataclass
class EvalOptions:
    """How to evaluate (the ``eval`` section of configs/eval_*.yaml)."""

    fps: float | None = 1.0  # frames per second evaluated (None: every annotated frame)
    batch_size: int = 32
    video_frames: int = 8  # frames per video for the video-level embedding (surgery type, retrieval)
    smoothing_window: int = 1  # phase-probability moving average, in evaluated frames (1: off)
    causal_smoothing: bool = False
    tool_scoring: str = "centered"  # centered | contrast | sigmoid (see ophclip.eval.zero_shot.TOOL_SCORINGS)
    tool_threshold: float = DEFAULT_TOOL_THRESHOLD
    n_boot: int = 1000  # bootstrap resamples of videos for 95% CIs (0: none)
    seed: int = 0
    max_videos: int | None = None  # evaluate only the first N videos (quick looks)
    plots: bool = True
    max_ribbons: int = 50  # phase-ribbon PNGs written (one per video, up to this many)


@dataclass
class ProbeOptions:
    """The ``probe`` section: the few-shot-by-video linear probe (:mod:`ophclip.eval.probe`)."""

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    C: float = 1.0
    max_iter: int = 1000
    knn_k: int = 20  # also a cosine kNN classifier on all training frames (0: skip)


@dataclass
class ModelRef:
    name: str = "OphCLIP-tiny-MiniLM"  # registered model name or a save_pretrained folder
    pretrained: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:1


@dataclass
class ZeroShotConfig:
    """``ophclip zeroshot``: configs/eval_*.yaml."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    model: ModelRef = field(default_factory=ModelRef)
    prompts: str = "synthetic"  # a path, or a shipped file by name (ophclip/prompts/)
    out: str = "runs/zeroshot"
    retrieval: bool = True  # video <-> title retrieval where the benchmark has titles (synthetic)
    eval: EvalOptions = field(default_factory=EvalOptions)


@dataclass
class ProbeConfig:
    """``ophclip probe``: configs/eval_probe_*.yaml."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    model: ModelRef = field(default_factory=ModelRef)
    train_split: str | None = None  # None: random by-video split of the benchmark.split videos
    test_fraction: float = 0.3
    split_seed: int = 0
    out: str = "runs/probe"
    eval: EvalOptions = field(default_factory=EvalOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)
