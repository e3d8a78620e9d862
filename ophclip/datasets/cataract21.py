"""Cataract-21 (Primus et al., 2018): one ``frame,label`` CSV per video.

``<annotation dir>/<video_id>.csv`` lists a phase name per frame (0-based frame
numbers). The ten phases use Cataract-101's names; ``not_initialized`` marks frames
before the surgery starts and is the idle class. Pass ``class_names`` for a release
with other spellings; any label outside them is an error naming the file and line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import BenchmarkConfig
from .labels import FrameLabels
from .parsing import (
    lookup_labels,
    read_class_list,
    read_frame_column,
    read_table,
)
from .registry import LoadedBenchmark, from_videos, register_adapter
from .sources import phase_labels_from_csvs

logger = logging.getLogger(__name__)

PHASE_NAMES = [
    "not_initialized", "Incision", "Viscous Agent Injection", "Rhexis", "Hydrodissection",
    "Phacoemulsificiation", "Irrigation and Aspiration", "Capsule Polishing", "Lens Implant Setting-Up",
    "Viscous Agent Removal", "Tonifying and Antibiotics",
]  # fmt: skip


def read_frame_label_csv(path: str | Path, class_names: Sequence[str], frame_base: int = 0):
    """``frame,label`` -> (0-based frames, class indices)."""
    df = read_table(path, ["frame", "label"], what="Cataract-21 annotation CSV")
    frames = read_frame_column(df, path, "frame", frame_base)
    labels = lookup_labels(list(df["label"]), {n: i for i, n in enumerate(class_names)}, path, "label")
    return frames, labels


def load_cataract21(
    annotation_dir: str | Path,
    video_dir: str | Path | None = None,
    fps: float = 25.0,
    class_names: Sequence[str] = PHASE_NAMES,
    frame_base: int = 0,
    frame_tolerance: int = 1,
    name: str = "cataract21",
) -> FrameLabels:
    return phase_labels_from_csvs(
        annotation_dir, video_dir, lambda path: read_frame_label_csv(path, class_names, frame_base),
        what="Cataract-21 annotation", frame_column="frame", fps=fps, class_names=class_names,
        frame_tolerance=frame_tolerance, name=name,
    )


@dataclass
class Cataract21Options:
    class_names_file: str | None = None  # one class name per line, for a release with other spellings


@register_adapter("cataract21", Cataract21Options)
def cataract21_benchmark(cfg: BenchmarkConfig, options: Cataract21Options) -> LoadedBenchmark:
    """``root`` is the folder of per-video ``frame,label`` CSVs."""
    names = read_class_list(options.class_names_file) or PHASE_NAMES
    phases = load_cataract21(cfg.root, video_dir=cfg.video_dir, class_names=names, frame_tolerance=cfg.frame_tolerance)
    return from_videos(cfg, phases.subset(split=cfg.split))
