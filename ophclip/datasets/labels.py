"""The per-frame label contract every dataset adapter produces.

An adapter reads an annotated dataset in its *native* format and returns a
:class:`FrameLabels`: one label array per video at the annotation's own frame rate,
plus the class names. Two tasks share the type:

* ``task="phase"``: ``labels[video_id]`` is an int array (n_frames,) of class
  indices into ``class_names``; ``-1`` marks a frame with no label (not scored).
* ``task="tools"``: ``labels[video_id]`` is an int8 array (n_frames, n_tools) of
  0/1; ``-1`` marks a frame-tool pair that is not scored (e.g. CATARACTS' 0.5
  under ``half_as="ignore"``).

``FrameLabels.frame_table(fps)`` gives the DESIGN.md table
``video_id, frame_index, time_s, label`` at an evaluation rate; the frame sources of
:mod:`ophclip.datasets.sources` yield the pixels of exactly those frames.

Video-level labels (surgery type) are a :class:`VideoLabels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import DataError

# Frame numbers from float arithmetic are nudged by this before flooring, so that
# k * 25 / 5 lands on the integer it is and not one below.
_EPS = 1e-6
# No surgery video has more frames than this (about 23 days at 25 fps); a larger number is a typo
# and would otherwise allocate a label array of that size.
MAX_FRAMES = 50_000_000


@dataclass
class FrameLabels:
    """Per-frame labels of one benchmark (see module docstring)."""

    name: str
    task: Literal["phase", "tools"]
    class_names: list[str]
    videos: pd.DataFrame  # video_id, n_frames, fps, split, source (video file/folder or ""), annotation
    labels: dict[str, np.ndarray]
    # Optional: group -> the classes a video of that group can show (e.g. the phases of a surgery
    # type), with the group of each video in a ``videos["group"]`` column. Evaluation then also
    # scores phase recognition with the group known, as a benchmark of one surgery type would.
    group_classes: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.videos = self.videos.reset_index(drop=True)
        if self.videos.empty or "video_id" not in self.videos:
            raise DataError(f"{self.name}: no annotated videos")
        missing = [v for v in self.videos["video_id"] if v not in self.labels]
        if missing:
            raise DataError(f"{self.name}: videos {missing[:5]} have no labels; every listed video needs annotations")

    @property
    def video_ids(self) -> list[str]:
        return list(self.videos["video_id"])

    def video(self, video_id: str) -> pd.Series:
        rows = self.videos[self.videos["video_id"] == video_id]
        if rows.empty:
            raise DataError(f"{self.name}: unknown video {video_id!r}")
        return rows.iloc[0]

    def subset(self, video_ids: Sequence[str] | None = None, split: str | None = None) -> FrameLabels:
        """The same benchmark restricted to some videos and/or one split."""
        keep = self.videos
        if split is not None:
            keep = keep[keep["split"] == split]
            if keep.empty:
                splits = sorted(set(self.videos["split"]))
                raise DataError(f"{self.name}: no videos in split {split!r}; splits present: {splits}")
        if video_ids is not None:
            unknown = sorted(set(video_ids) - set(keep["video_id"]))
            if unknown:
                raise DataError(f"{self.name}: unknown video ids {unknown[:5]}")
            keep = keep[keep["video_id"].isin(list(video_ids))]
        ids = list(keep["video_id"])
        return FrameLabels(self.name, self.task, list(self.class_names), keep.copy(), {v: self.labels[v] for v in ids},
                           dict(self.group_classes))

    def sample_indices(self, video_id: str, fps: float | None) -> np.ndarray:
        """Native frame indices of the frames evaluated at ``fps`` (None: every frame)."""
        row = self.video(video_id)
        return sample_frame_indices(int(row["n_frames"]), float(row["fps"]), fps)

    def frame_table(self, fps: float | None = None) -> pd.DataFrame:
        """``video_id, frame_index, time_s, label`` (label is a list of 0/1/-1 for tools)."""
        parts = []
        for video_id in self.video_ids:
            native_fps = float(self.video(video_id)["fps"])
            idx = self.sample_indices(video_id, fps)
            lab = self.labels[video_id][idx]
            parts.append(
                pd.DataFrame(
                    {
                        "video_id": video_id,
                        "frame_index": idx,
                        "time_s": idx / native_fps,
                        "label": list(lab) if lab.ndim == 2 else lab,
                    }
                )
            )
        if not parts:
            return pd.DataFrame(columns=["video_id", "frame_index", "time_s", "label"])
        return pd.concat(parts, ignore_index=True)

    def class_counts(self) -> dict[str, int]:
        """Frames per class over all videos (phase: frames labelled with it; tools: frames with the tool)."""
        if self.task == "phase":
            total = np.zeros(len(self.class_names), dtype=np.int64)
            for lab in self.labels.values():
                total += np.bincount(lab[lab >= 0], minlength=len(self.class_names))
        else:
            total = sum(((lab == 1).sum(axis=0) for lab in self.labels.values()), np.zeros(len(self.class_names), np.int64))
        return {name: int(n) for name, n in zip(self.class_names, total, strict=False)}


@dataclass
class VideoLabels:
    """Video-level labels (surgery type). ``targets`` is (n_videos, n_classes) multi-hot in ``videos`` order."""

    name: str
    class_names: list[str]
    videos: pd.DataFrame  # video_id, split, source
    targets: np.ndarray
    multi_label: bool = field(default=False)

    def __post_init__(self) -> None:
        self.videos = self.videos.reset_index(drop=True)
        if self.targets.shape != (len(self.videos), len(self.class_names)):
            raise DataError(f"{self.name}: targets shape {self.targets.shape} does not match videos x classes")

    @property
    def video_ids(self) -> list[str]:
        return list(self.videos["video_id"])

    def subset(self, video_ids: Sequence[str]) -> VideoLabels:
        pos = {v: i for i, v in enumerate(self.video_ids)}
        unknown = [v for v in video_ids if v not in pos]
        if unknown:
            raise DataError(f"{self.name}: unknown video ids {unknown[:5]}")
        rows = [pos[v] for v in video_ids]
        return VideoLabels(self.name, list(self.class_names), self.videos.iloc[rows].copy(), self.targets[rows], self.multi_label)


def sample_frame_indices(n_frames: int, native_fps: float, fps: float | None) -> np.ndarray:
    """Frame k of an ``fps`` stream shows native frame floor(k * native_fps / fps).

    This is the rule :func:`data_pipeline.frame_cache.iter_resampled_frames` decodes
    by (the last frame whose timestamp is <= k / fps), so labels and pixels agree.
    """
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if fps is None or fps >= native_fps:
        return np.arange(n_frames, dtype=np.int64)
    n_out = math.ceil(n_frames * fps / native_fps - _EPS)
    idx = np.floor(np.arange(n_out) * native_fps / fps + _EPS).astype(np.int64)
    return idx[idx < n_frames]


def check_length(n_frames: int, path: Path | str, video: str) -> int:
    if n_frames > MAX_FRAMES:
        raise DataError(
            f"{path}: video {video!r} would have {n_frames} frames, more than any surgery video "
            f"({MAX_FRAMES}); check the frame numbers or times"
        )
    return n_frames


def segments_to_frame_labels(
    starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, n_frames: int, fill: int = -1
) -> np.ndarray:
    """Paint half-open frame ranges [start, end) with labels; later rows win on overlap."""
    out = np.full(n_frames, fill, dtype=np.int64)
    for s, e, lab in zip(starts, ends, labels, strict=False):
        out[max(int(s), 0) : min(int(e), n_frames)] = lab
    return out

