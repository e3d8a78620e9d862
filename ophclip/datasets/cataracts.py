"""CATARACTS (Al Hajj et al., MedIA 2019; steps from the 2020 challenge): steps and tools.

One CSV per video, named ``<video_id>.csv``, in each of two folders:

* steps: ``Frame,Steps`` with integer step ids 0-18 (:data:`STEP_NAMES`; 0 is idle);
* tools: ``Frame`` plus one column per tool (:data:`TOOL_NAMES` for the real set;
  the tool list is read from the header, so extra tools, as in the synthetic set,
  work too), values 0, 0.5 or 1.

``Frame`` counts from 1 in the released CSVs (``frame_base=1``); the synthetic set
numbers mp4 frames from 0 and passes ``frame_base=0``.

**0.5 in the tool columns.** CATARACTS marks a tool 0.5 when it is only partly in
view or the annotators were unsure. ``half_as`` decides what it becomes:
``"positive"`` (default: the tool is in the frame, which is what a frame-level
recogniser is asked), ``"negative"``, or ``"ignore"`` (-1: the frame-tool pair is
left out of AP and FPR, as the challenge's evaluation did with ambiguous frames).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .config import BenchmarkConfig
from .labels import FrameLabels
from .parsing import (
    annotation_files,
    check_annotation_length,
    line_of,
    lookup_labels,
    per_frame_labels,
    read_frame_column,
    read_table,
)
from .registry import LoadedBenchmark, from_videos, register_adapter
from .sources import frame_count_of, phase_labels_from_csvs, video_files

logger = logging.getLogger(__name__)

STEP_NAMES = [
    "Idle", "Toric Marking", "Implant Ejection", "Incision", "Viscodilatation", "Capsulorhexis",
    "Hydrodissection", "Nucleus Breaking", "Phacoemulsification", "Vitrectomy", "Irrigation/Aspiration",
    "Preparing Implant", "Manual Aspiration", "Implantation", "Positioning", "OVD Aspiration",
    "Suturing", "Sealing Control", "Wound Hydration",
]  # fmt: skip

TOOL_NAMES = [
    "Biomarker", "Charleux Cannula", "Hydrodissection Cannula", "Rycroft Cannula", "Viscoelastic Cannula",
    "Cotton", "Capsulorhexis Cystotome", "Bonn Forceps", "Capsulorhexis Forceps", "Troutman Forceps",
    "Needle Holder", "Irrigation/Aspiration Handpiece", "Phacoemulsifier Handpiece", "Vitrectomy Handpiece",
    "Implant Injector", "Primary Incision Knife", "Secondary Incision Knife", "Micromanipulator",
    "Suture Needle", "Mendez Ring", "Vannas Scissors",
]  # fmt: skip

HalfAs = Literal["positive", "negative", "ignore"]
_HALF = {"positive": 1, "negative": 0, "ignore": -1}


def read_step_csv(path: str | Path, n_classes: int = len(STEP_NAMES), frame_base: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``Frame,Steps`` -> (0-based frames, step ids)."""
    df = read_table(path, ["Frame", "Steps"], what="CATARACTS steps CSV")
    frames = read_frame_column(df, path, "Frame", frame_base)
    index = {str(i): i for i in range(n_classes)}
    index.update({f"{i}.0": i for i in range(n_classes)})
    steps = lookup_labels(list(df["Steps"]), index, path, "Steps")
    return frames, steps


def read_tool_csv(
    path: str | Path, half_as: HalfAs = "positive", frame_base: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``Frame,<tool>,...`` -> (0-based frames, (rows, tools) int8 multi-hot, tool names)."""
    if half_as not in _HALF:
        raise DataError(f"half_as={half_as!r}; expected one of {list(_HALF)}")
    df = read_table(path, ["Frame"], what="CATARACTS tools CSV")
    tools = [c for c in df.columns if c != "Frame"]
    if not tools:
        raise DataError(f"{path}: no tool columns after 'Frame'")
    if len(set(tools)) != len(tools):
        raise DataError(f"{path}: repeated tool column names in header {tools}")
    frames = read_frame_column(df, path, "Frame", frame_base)
    values = np.empty((len(df), len(tools)), dtype=np.int8)
    mapping = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "0.5": _HALF[half_as], ".5": _HALF[half_as]}
    for j, tool in enumerate(tools):
        for i, raw in enumerate(df[tool]):
            v = mapping.get(str(raw).strip())
            if v is None:
                raise DataError(f"{path}: line {line_of(i)}: tool {tool!r} = {raw!r}; expected 0, 0.5 or 1")
            values[i, j] = v
    return frames, values, tools


def load_cataracts_steps(
    steps_dir: str | Path,
    video_dir: str | Path | None = None,
    fps: float = 30.0,
    frame_base: int = 1,
    class_names: Sequence[str] = STEP_NAMES,
    frame_tolerance: int = 1,
    name: str = "cataracts_steps",
) -> FrameLabels:
    """Per-frame step labels from a folder of ``Frame,Steps`` CSVs.

    ``fps`` is the annotation rate (CATARACTS videos are 30 fps); with ``video_dir``
    the videos' own rate and frame count are used and checked against the CSVs.
    """
    return phase_labels_from_csvs(
        steps_dir, video_dir, lambda path: read_step_csv(path, len(class_names), frame_base),
        what="CATARACTS steps", frame_column="Frame", fps=fps, class_names=class_names,
        frame_tolerance=frame_tolerance, name=name,
    )


def load_cataracts_tools(
    tools_dir: str | Path,
    video_dir: str | Path | None = None,
    fps: float = 30.0,
    half_as: HalfAs = "positive",
    frame_base: int = 1,
    frame_tolerance: int = 1,
    video_ids: Sequence[str] | None = None,
    name: str = "cataracts_tools",
) -> FrameLabels:
    """Per-frame multi-hot tool labels from a folder of tool CSVs (all must share one header)."""
    videos = video_files(video_dir)
    files = annotation_files(tools_dir, what="CATARACTS tools")
    if video_ids is not None:
        by_stem = {p.stem: p for p in files}
        missing = [v for v in video_ids if v not in by_stem]
        if missing:
            raise DataError(f"{Path(tools_dir) / (missing[0] + '.csv')}: tool annotation file not found")
        files = [by_stem[v] for v in video_ids]
    rows, labels, tool_names = [], {}, None
    for path in files:
        vid = path.stem
        frames, values, tools = read_tool_csv(path, half_as, frame_base)
        if tool_names is None:
            tool_names = tools
        elif tools != tool_names:
            raise DataError(f"{path}: tool columns {tools} differ from {files[0]}'s {tool_names}; use one header")
        n_video, video_fps, source = frame_count_of(vid, videos)
        n = check_annotation_length(frames, n_video, path, vid, source, frame_tolerance)
        labels[vid] = per_frame_labels(frames, values, n, path, "Frame", vid)
        rows.append({"video_id": vid, "n_frames": n, "fps": video_fps or fps, "split": "", "source": source,
                     "annotation": str(path)})
    return FrameLabels(name, "tools", list(tool_names or []), pd.DataFrame(rows), labels)


@dataclass
class CataractsOptions:
    tools_dir: str | None = None  # the folder of tool CSVs (tool recognition is scored when given)
    half_as: HalfAs = "positive"  # what a tool's 0.5 means (module docstring)


@register_adapter("cataracts", CataractsOptions)
def cataracts_benchmark(cfg: BenchmarkConfig, options: CataractsOptions) -> LoadedBenchmark:
    """``root`` is the folder of ``Frame,Steps`` CSVs; ``options.tools_dir`` the folder of tool CSVs."""
    phases = load_cataracts_steps(cfg.root, video_dir=cfg.video_dir, frame_tolerance=cfg.frame_tolerance)
    tools = None
    if options.tools_dir:
        tools = load_cataracts_tools(options.tools_dir, video_dir=cfg.video_dir, half_as=options.half_as,
                                     frame_tolerance=cfg.frame_tolerance, video_ids=phases.video_ids)
    return from_videos(cfg, phases.subset(split=cfg.split), tools=tools)
