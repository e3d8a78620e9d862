"""Cataract-101 (Schoeffmann et al., MMSys 2018): phase transitions, ';'-separated.

Files under the dataset root::

    annotations.csv   VideoID;FrameNo;Phase    one row per phase *transition*
    phases.csv        Phase;Meaning            phase id -> name
    videos.csv        VideoID;Frames;FPS;Surgeon;Experience
    videos/case_<VideoID>.mp4                  (optional; name pattern configurable)

The transition rule: a phase starts at its row's ``FrameNo`` (0-based) and lasts
until the next row's frame; the last phase lasts to the end of the video
(``Frames`` in videos.csv); frames before the first row are idle. Idle is class 0,
``"Idle"``; the dataset's phases follow in id order, with the dataset's own
spellings ("Phacoemulsificiation").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .config import BenchmarkConfig
from .labels import FrameLabels, check_length
from .parsing import check_increasing, check_within, float_column, int_column, line_of, read_table
from .registry import LoadedBenchmark, NoOptions, from_videos, register_adapter

logger = logging.getLogger(__name__)

IDLE = "Idle"
SEP = ";"


def read_phase_names(path: str | Path) -> dict[int, str]:
    """``phases.csv`` -> {phase id: name}, in file order."""
    df = read_table(path, ["Phase", "Meaning"], sep=SEP, what="Cataract-101 phases.csv")
    ids = int_column(df, "Phase", path, minimum=1)
    names: dict[int, str] = {}
    for i, (pid, name) in enumerate(zip(ids, df["Meaning"], strict=False)):
        name = str(name).strip()
        if not name:
            raise DataError(f"{path}: line {line_of(i)}: phase {pid} has an empty name")
        if int(pid) in names:
            raise DataError(f"{path}: line {line_of(i)}: phase id {pid} is listed twice")
        names[int(pid)] = name
    if not names:
        raise DataError(f"{path}: no phases listed")
    return names


def read_video_table(path: str | Path) -> pd.DataFrame:
    """``videos.csv`` -> VideoID (int), Frames (int), FPS (float), line (of the file)."""
    df = read_table(path, ["VideoID", "Frames", "FPS"], sep=SEP, what="Cataract-101 videos.csv")
    out = pd.DataFrame(
        {
            "VideoID": int_column(df, "VideoID", path),
            "Frames": int_column(df, "Frames", path),
            "FPS": float_column(df, "FPS", path),
            "line": [line_of(i) for i in range(len(df))],
        }
    )
    dup = out["VideoID"].duplicated()
    if dup.any():
        i = int(np.nonzero(dup.to_numpy())[0][0])
        raise DataError(f"{path}: line {line_of(i)}: VideoID {out['VideoID'].iloc[i]} is listed twice")
    for row in out.itertuples():
        check_length(row.Frames, path, str(row.VideoID))
        if row.Frames == 0:
            raise DataError(f"{path}: line {row.line}: video {row.VideoID} is empty (Frames = 0); remove the row")
        if row.FPS <= 0:
            raise DataError(f"{path}: line {row.line}: video {row.VideoID} has FPS {row.FPS}; expected > 0")
    return out


def read_transitions(path: str | Path) -> pd.DataFrame:
    """``annotations.csv`` -> VideoID, FrameNo, Phase (ints) and the file line of each row."""
    df = read_table(path, ["VideoID", "FrameNo", "Phase"], sep=SEP, what="Cataract-101 annotations.csv")
    return pd.DataFrame(
        {
            "VideoID": int_column(df, "VideoID", path),
            "FrameNo": int_column(df, "FrameNo", path),
            "Phase": int_column(df, "Phase", path),
            "line": [line_of(i) for i in range(len(df))],
        }
    )


def transitions_to_labels(frames: np.ndarray, labels: np.ndarray, n_frames: int, idle: int = 0) -> np.ndarray:
    """Per-frame labels from sorted transition frames (the rule in the module docstring)."""
    out = np.full(n_frames, idle, dtype=np.int64)
    bounds = list(frames) + [n_frames]
    for k, lab in enumerate(labels):
        out[int(bounds[k]) : int(bounds[k + 1])] = lab
    return out


def load_cataract101(
    root: str | Path,
    video_dir: str | Path | None = None,
    video_pattern: str = "case_{id}.mp4",
    video_ids: Mapping[int, str] | None = None,
    name: str = "cataract101",
) -> FrameLabels:
    """Read a Cataract-101-format folder into per-frame phase labels.

    Args:
        root: folder holding annotations.csv, phases.csv, videos.csv.
        video_dir: folder of the videos (default ``root/videos`` when it exists).
        video_pattern: video file name for an integer VideoID.
        video_ids: optional {integer VideoID: string video id} (the synthetic set's
            ``c101_id`` mapping); otherwise the id is the integer as a string.
    """
    root = Path(root)
    ann_path, phases_path, videos_path = root / "annotations.csv", root / "phases.csv", root / "videos.csv"
    phase_names = read_phase_names(phases_path)
    videos = read_video_table(videos_path)
    transitions = read_transitions(ann_path)

    class_ids = sorted(phase_names)
    class_names = [IDLE] + [phase_names[i] for i in class_ids]
    index_of = {pid: k + 1 for k, pid in enumerate(class_ids)}
    unknown = ~transitions["Phase"].isin(list(index_of))
    if unknown.any():
        row = transitions[unknown].iloc[0]
        raise DataError(
            f"{ann_path}: line {row.line}: unknown phase id {row.Phase}; {phases_path} lists {class_ids}"
        )
    listed = set(videos["VideoID"])
    stray = ~transitions["VideoID"].isin(list(listed))
    if stray.any():
        row = transitions[stray].iloc[0]
        raise DataError(f"{ann_path}: line {row.line}: VideoID {row.VideoID} is not in {videos_path}; add it there")

    video_dir = Path(video_dir) if video_dir is not None else root / "videos"
    by_video = {vid: g for vid, g in transitions.groupby("VideoID", sort=False)}
    rows, labels = [], {}
    for v in videos.itertuples():
        group = by_video.get(v.VideoID)
        if group is None:
            raise DataError(
                f"{ann_path}: video {v.VideoID} (listed at {videos_path} line {v.line}) has no transition rows"
            )
        frames = group["FrameNo"].to_numpy()
        lines = group["line"].to_numpy()
        check_increasing(frames, ann_path, "FrameNo", lines)
        check_within(frames, v.Frames, ann_path, "FrameNo", str(v.VideoID), lines)
        phase_idx = np.array([index_of[p] for p in group["Phase"]], dtype=np.int64)
        vid = video_ids.get(v.VideoID, str(v.VideoID)) if video_ids is not None else str(v.VideoID)
        labels[vid] = transitions_to_labels(frames, phase_idx, v.Frames, idle=0)
        source = video_dir / video_pattern.format(id=v.VideoID, video_id=vid)
        rows.append(
            {
                "video_id": vid,
                "n_frames": int(v.Frames),
                "fps": float(v.FPS),
                "split": "",
                "source": str(source) if source.is_file() else "",
                "annotation": str(ann_path),
            }
        )
    logger.info("%s: %d videos, %d frames, %d phases", name, len(rows), sum(r["n_frames"] for r in rows), len(class_ids))
    return FrameLabels(name, "phase", class_names, pd.DataFrame(rows), labels)


@register_adapter("cataract101")
def cataract101_benchmark(cfg: BenchmarkConfig, options: NoOptions) -> LoadedBenchmark:
    """``root`` holds annotations.csv, phases.csv and videos.csv."""
    phases = load_cataract101(cfg.root, video_dir=cfg.video_dir).subset(split=cfg.split)
    return from_videos(cfg, phases)
