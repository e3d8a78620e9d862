"""OphNet 2024 (Hu et al., ECCV 2024): phase/operation segments and surgery labels.

Files (both start with a UTF-8 byte-order mark and use CRLF line ends; both are handled):

* ``OphNet2024_loca_challenge.csv``: ``video_id,start,end,split,surgery_id,phase_id,operation_id``,
  one row per operation segment, times in seconds. Every operation belongs to a phase.
* ``OphNet2024_surgery.csv``: ``video_id,surgery`` with multi-label ids such as ``"1,13,14"``.

The official id -> name tables are not in the benchmark repository, so names come
from a user file (:func:`read_class_names`: ``id,name`` CSV); without one a class
is called ``phase 7`` / ``operation 12`` / ``surgery 3``.

Per-frame labels are painted at ``fps`` frames per second (default 1): frame k,
shown at k / fps seconds, gets the segment with start <= t < end. Time no segment
covers is unlabelled (-1) and not scored: OphNet leaves background unannotated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .config import BenchmarkConfig
from .labels import FrameLabels, VideoLabels, check_length
from .parsing import float_column, int_column, line_of, parse_int, read_table
from .registry import LoadedBenchmark, from_videos, register_adapter
from .sources import video_files

logger = logging.getLogger(__name__)

SEGMENT_COLUMNS = ["video_id", "start", "end", "split", "surgery_id", "phase_id", "operation_id"]
SPLITS = ("train", "val", "test")


def read_segments(path: str | Path) -> pd.DataFrame:
    """The challenge CSV with typed columns and each row's file line."""
    df = read_table(path, SEGMENT_COLUMNS, what="OphNet segment file")
    out = pd.DataFrame(
        {
            "video_id": df["video_id"].str.strip(),
            "start": float_column(df, "start", path),
            "end": float_column(df, "end", path),
            "split": df["split"].str.strip(),
            "surgery_id": int_column(df, "surgery_id", path),
            "phase_id": int_column(df, "phase_id", path),
            "operation_id": int_column(df, "operation_id", path),
            "line": [line_of(i) for i in range(len(df))],
        }
    )
    if out.empty:
        raise DataError(f"{path}: no segment rows after the header")
    for i in np.nonzero((out["video_id"] == "").to_numpy())[0]:
        raise DataError(f"{path}: line {line_of(int(i))}: empty video_id")
    for i in np.nonzero((out["end"] <= out["start"]).to_numpy())[0]:
        raise DataError(f"{path}: line {line_of(int(i))}: end {out['end'][i]} is not after start {out['start'][i]}")
    bad = ~out["split"].isin(SPLITS)
    if bad.any():
        i = int(np.nonzero(bad.to_numpy())[0][0])
        raise DataError(f"{path}: line {line_of(i)}: split {out['split'][i]!r}; expected one of {SPLITS}")
    mixed = out.groupby("video_id")["split"].nunique()
    if (mixed > 1).any():
        raise DataError(f"{path}: video {mixed[mixed > 1].index[0]!r} appears in more than one split")
    return out


def read_surgery_labels(path: str | Path) -> pd.DataFrame:
    """``video_id,surgery`` -> video_id, surgery_ids (list of int)."""
    df = read_table(path, ["video_id", "surgery"], what="OphNet surgery label file")
    ids = []
    for i, raw in enumerate(df["surgery"]):
        parts = [p for p in str(raw).replace(";", ",").split(",") if p.strip()]
        if not parts:
            raise DataError(f"{path}: line {line_of(i)}: video {df['video_id'][i]!r} has no surgery label")
        ids.append(sorted({parse_int(p, path, i, "surgery") for p in parts}))
    if not ids:
        raise DataError(f"{path}: no rows after the header")
    out = pd.DataFrame({"video_id": df["video_id"].str.strip(), "surgery_ids": ids})
    dup = out["video_id"].duplicated()
    if dup.any():
        i = int(np.nonzero(dup.to_numpy())[0][0])
        raise DataError(f"{path}: line {line_of(i)}: video {out['video_id'][i]!r} is listed twice")
    return out


def read_class_names(path: str | Path) -> dict[int, str]:
    """A user's ``id,name`` CSV -> {id: name}."""
    df = read_table(path, ["id", "name"], what="class-name table")
    ids = int_column(df, "id", path)
    out: dict[int, str] = {}
    for i, (cid, name) in enumerate(zip(ids, df["name"], strict=False)):
        if not str(name).strip():
            raise DataError(f"{path}: line {line_of(i)}: class {cid} has an empty name")
        if int(cid) in out:
            raise DataError(f"{path}: line {line_of(i)}: class id {cid} is listed twice")
        out[int(cid)] = str(name).strip()
    return out


def _class_table(ids: list[int], names_file: str | Path | None, kind: str, source: Path) -> tuple[list[int], list[str]]:
    if names_file is None:
        return ids, [f"{kind} {i}" for i in ids]
    names = read_class_names(names_file)
    missing = [i for i in ids if i not in names]
    if missing:
        raise DataError(f"{names_file}: no name for {kind} id(s) {missing[:10]} used in {source}; add rows id,name")
    all_ids = sorted(names)
    return all_ids, [names[i] for i in all_ids]


def load_ophnet_phases(
    segments_csv: str | Path,
    level: Literal["phase", "operation"] = "phase",
    split: str | None = None,
    fps: float = 1.0,
    class_names_file: str | Path | None = None,
    video_dir: str | Path | None = None,
    name: str | None = None,
) -> FrameLabels:
    """Per-frame phase (or operation) labels at ``fps`` from the challenge segment file."""
    segments_csv = Path(segments_csv)
    seg = read_segments(segments_csv)
    column = f"{level}_id"
    if column not in seg:
        raise DataError(f"level={level!r}; expected 'phase' or 'operation'")
    ids, class_names = _class_table(sorted(set(seg[column])), class_names_file, level, segments_csv)
    index_of = {cid: k for k, cid in enumerate(ids)}
    if split is not None:
        if split not in SPLITS:
            raise DataError(f"split={split!r}; expected one of {SPLITS}")
        seg = seg[seg["split"] == split]
        if seg.empty:
            raise DataError(f"{segments_csv}: no videos in split {split!r}")
    videos = video_files(video_dir)
    rows, labels = [], {}
    for vid, group in seg.groupby("video_id", sort=True):
        n = check_length(max(1, math.ceil(float(group["end"].max()) * fps)), segments_csv, vid)
        lab = np.full(n, -1, dtype=np.int64)
        t = np.arange(n) / fps
        for s, e, cid in zip(group["start"], group["end"], group[column], strict=False):
            lab[(t >= s) & (t < e)] = index_of[int(cid)]
        labels[vid] = lab
        source = videos.get(vid)
        rows.append({"video_id": vid, "n_frames": n, "fps": fps, "split": group["split"].iloc[0],
                     "source": str(source) if source else "", "annotation": str(segments_csv)})
    return FrameLabels(name or f"ophnet_{level}", "phase", class_names, pd.DataFrame(rows), labels)


def load_ophnet_surgery(
    surgery_csv: str | Path,
    segments_csv: str | Path | None = None,
    split: str | None = None,
    class_names_file: str | Path | None = None,
    video_dir: str | Path | None = None,
    name: str = "ophnet_surgery",
) -> VideoLabels:
    """Video-level multi-label surgery types; ``segments_csv`` supplies the split of each video."""
    surgery_csv = Path(surgery_csv)
    table = read_surgery_labels(surgery_csv)
    all_ids = sorted({i for ids in table["surgery_ids"] for i in ids})
    ids, class_names = _class_table(all_ids, class_names_file, "surgery", surgery_csv)
    index_of = {cid: k for k, cid in enumerate(ids)}
    table["split"] = ""
    if segments_csv is not None:
        splits = read_segments(segments_csv).groupby("video_id")["split"].first()
        table["split"] = table["video_id"].map(splits).fillna("")
    if split is not None:
        table = table[table["split"] == split]
        if table.empty:
            raise DataError(f"{surgery_csv}: no videos in split {split!r} (give segments_csv for the splits)")
    targets = np.zeros((len(table), len(ids)), dtype=np.int8)
    for r, surgery_ids in enumerate(table["surgery_ids"]):
        targets[r, [index_of[i] for i in surgery_ids]] = 1
    videos = video_files(video_dir)
    table["source"] = [str(videos[v]) if v in videos else "" for v in table["video_id"]]
    multi = bool((targets.sum(axis=1) > 1).any())
    return VideoLabels(name, class_names, table[["video_id", "split", "source"]], targets, multi_label=multi)


@dataclass
class OphNetOptions:
    level: Literal["phase", "operation"] = "phase"  # which segment label is the class
    surgery_csv: str | None = None  # OphNet2024_surgery.csv (surgery-type recognition is scored when given)
    class_names_file: str | None = None  # an id,name CSV (default: "phase 7", "operation 12", ...)
    annotation_fps: float = 1.0  # the rate labels are painted at


@register_adapter("ophnet", OphNetOptions)
def ophnet_benchmark(cfg: BenchmarkConfig, options: OphNetOptions) -> LoadedBenchmark:
    """``root`` is the challenge segment CSV; its split column gives the splits, so ``split`` is applied as it is read."""
    phases = load_ophnet_phases(cfg.root, level=options.level, split=cfg.split, fps=options.annotation_fps,
                                class_names_file=options.class_names_file, video_dir=cfg.video_dir)
    surgery = None
    if options.surgery_csv:
        surgery = load_ophnet_surgery(options.surgery_csv, cfg.root, split=cfg.split, video_dir=cfg.video_dir)
    return from_videos(cfg, phases, surgery=surgery)
