"""Cataract-1K phases (Ghamsarian et al., 2024): one segment CSV per case.

``case_<id>_annotations_phases.csv`` (found anywhere under the annotation folder,
e.g. ``case_4687/case_4687_annotations_phases.csv``) has columns
``caseId,comment,frame,endFrame,sec,endSec``: ``comment`` is the phase name,
``frame``..``endFrame`` the segment's first and last frame (inclusive). Frames no
segment covers are ``Idle``. The 13 classes keep the dataset's own spellings
("Capsule Pulishing", "Viscoelastic_Suction", "Anterior_Chamber Flushing").

Without the video, a case ends at its last segment's ``endFrame``; with it, the
video's frame count is used and checked against the segments.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .config import BenchmarkConfig
from .labels import FrameLabels, check_length, segments_to_frame_labels
from .parsing import check_within, int_column, line_of, lookup_labels, read_table
from .registry import LoadedBenchmark, NoOptions, from_videos, register_adapter
from .sources import frame_count_of, video_files

logger = logging.getLogger(__name__)

PHASE_NAMES = [
    "Incision", "Viscoelastic", "Capsulorhexis", "Hydrodissection", "Phacoemulsification",
    "Irrigation/Aspiration", "Capsule Pulishing", "Lens Implantation", "Lens positioning",
    "Viscoelastic_Suction", "Anterior_Chamber Flushing", "Tonifying/Antibiotics", "Idle",
]  # fmt: skip
IDLE = "Idle"
COLUMNS = ["caseId", "comment", "frame", "endFrame"]
FILE_RE = re.compile(r"case_(\d+)_annotations_phases\.csv$")


def read_phase_segments(path: str | Path, class_names: Sequence[str] = PHASE_NAMES) -> pd.DataFrame:
    """One case file -> frame, end_frame (inclusive), label (class index), line."""
    df = read_table(path, COLUMNS, what="Cataract-1K phase annotation")
    start = int_column(df, "frame", path)
    end = int_column(df, "endFrame", path)
    label = lookup_labels(list(df["comment"]), {n: i for i, n in enumerate(class_names)}, path, "comment")
    for i in np.nonzero(end < start)[0]:
        raise DataError(f"{path}: line {line_of(int(i))}: endFrame {end[i]} is before frame {start[i]}")
    return pd.DataFrame({"frame": start, "end_frame": end, "label": label, "line": [line_of(i) for i in range(len(df))]})


def load_cataract1k(
    annotation_dir: str | Path,
    video_dir: str | Path | None = None,
    fps: float = 30.0,
    class_names: Sequence[str] = PHASE_NAMES,
    name: str = "cataract1k",
) -> FrameLabels:
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise DataError(f"{annotation_dir}: Cataract-1K annotation folder not found")
    files = sorted(p for p in annotation_dir.rglob("*.csv") if FILE_RE.search(p.name))
    if not files:
        raise DataError(f"{annotation_dir}: no case_<id>_annotations_phases.csv files")
    if IDLE not in class_names:
        raise DataError(f"class_names must include {IDLE!r} (frames between segments)")
    idle = list(class_names).index(IDLE)
    videos = video_files(video_dir)
    rows, labels = [], {}
    for path in files:
        vid = f"case_{FILE_RE.search(path.name).group(1)}"
        seg = read_phase_segments(path, class_names)
        if seg.empty:
            raise DataError(f"{path}: case {vid!r} is empty (no phase segments)")
        n_video, video_fps, source = frame_count_of(vid, videos)
        n = check_length(n_video if n_video is not None else int(seg["end_frame"].max()) + 1, path, vid)
        check_within(seg["end_frame"].to_numpy(), n, path, "endFrame", vid, seg["line"].to_numpy())
        labels[vid] = segments_to_frame_labels(seg["frame"].to_numpy(), seg["end_frame"].to_numpy() + 1,
                                               seg["label"].to_numpy(), n, fill=idle)
        rows.append({"video_id": vid, "n_frames": n, "fps": video_fps or fps, "split": "", "source": source,
                     "annotation": str(path)})
    return FrameLabels(name, "phase", list(class_names), pd.DataFrame(rows), labels)


@register_adapter("cataract1k")
def cataract1k_benchmark(cfg: BenchmarkConfig, options: NoOptions) -> LoadedBenchmark:
    """``root`` is the annotation folder (case_<id>_annotations_phases.csv anywhere under it)."""
    phases = load_cataract1k(cfg.root, video_dir=cfg.video_dir).subset(split=cfg.split)
    return from_videos(cfg, phases)
