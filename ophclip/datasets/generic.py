"""Your own dataset, in one of two plain formats.

* **Image list** (:func:`load_image_list`): a ``path,label`` CSV, one row per
  extracted frame image. Images in one folder form one video (the folder name is
  the video id); they are ordered by the numbers in their file names. Paths are
  relative to the CSV's folder unless absolute.
* **Segment folder** (:func:`load_segment_folder`): ``<video_id>.csv`` files with
  ``start,end,label`` rows in seconds. Frames are painted at ``fps``; frame k at
  k / fps seconds gets the segment with start <= t < end. With ``video_dir``, each
  ``<video_id>.mp4`` sets the length and the frames are decoded from it.

Labels are class names. ``class_names`` fixes the list and its order (anything
else is an error naming file and line); without it the sorted set of labels seen
is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .config import BenchmarkConfig
from .labels import FrameLabels, check_length
from .parsing import (
    annotation_files,
    float_column,
    line_of,
    lookup_labels,
    natural_key,
    read_class_list,
    read_table,
)
from .registry import LoadedBenchmark, from_videos, register_adapter
from .sources import frame_count_of, read_rgb, stack_frames, video_files

logger = logging.getLogger(__name__)


def load_image_list(csv_path: str | Path, class_names: Sequence[str] | None = None, fps: float = 1.0,
                    name: str = "generic_images") -> tuple[FrameLabels, dict[str, list[Path]]]:
    """Returns the labels and {video_id: ordered image paths} (feed it to :class:`ImageListSource`)."""
    csv_path = Path(csv_path)
    df = read_table(csv_path, ["path", "label"], what="image list")
    if df.empty:
        raise DataError(f"{csv_path}: the image list has no rows")
    labels_seen = [str(v).strip() for v in df["label"]]
    names = list(class_names) if class_names is not None else sorted(set(labels_seen))
    lab = lookup_labels(labels_seen, {n: i for i, n in enumerate(names)}, csv_path, "label")
    paths = []
    for i, raw in enumerate(df["path"]):
        if not str(raw).strip():
            raise DataError(f"{csv_path}: line {line_of(i)}: empty path")
        p = Path(str(raw).strip())
        paths.append(p if p.is_absolute() else csv_path.parent / p)
    table = pd.DataFrame({"path": paths, "label": lab, "video_id": [p.parent.name for p in paths]})
    rows, labels, files = [], {}, {}
    for vid, group in table.groupby("video_id", sort=True):
        group = group.iloc[sorted(range(len(group)), key=lambda k: natural_key(group["path"].iloc[k].name))]
        labels[vid] = group["label"].to_numpy(dtype=np.int64)
        files[vid] = list(group["path"])
        rows.append({"video_id": vid, "n_frames": len(group), "fps": fps, "split": "", "source": "",
                     "annotation": str(csv_path)})
    return FrameLabels(name, "phase", names, pd.DataFrame(rows), labels), files


class ImageListSource:
    """Reads the images an image list names, in video order."""

    def __init__(self, files: dict[str, list[Path]]):
        self.files = files

    def iter_frames(self, video_id, indices, native_fps, batch_size):
        files = self.files.get(video_id)
        if not files:
            raise DataError(f"video {video_id!r} is empty (no images listed)")
        for s in range(0, len(indices), batch_size):
            pos = np.arange(s, min(s + batch_size, len(indices)))
            frames = []
            for p in pos:
                frames.append(read_rgb(files[int(indices[p])]))
            yield pos, stack_frames(frames, f"video {video_id!r}")


def read_segment_csv(path: str | Path) -> pd.DataFrame:
    """``start,end,label`` (seconds) -> start, end (float), label (str), line."""
    df = read_table(path, ["start", "end", "label"], what="segment CSV")
    out = pd.DataFrame({"start": float_column(df, "start", path), "end": float_column(df, "end", path),
                        "label": [str(v).strip() for v in df["label"]], "line": [line_of(i) for i in range(len(df))]})
    for i in np.nonzero((out["end"] <= out["start"]).to_numpy())[0]:
        raise DataError(f"{path}: line {line_of(int(i))}: end {out['end'][i]} is not after start {out['start'][i]}")
    return out


def load_segment_folder(annotation_dir: str | Path, fps: float = 1.0, class_names: Sequence[str] | None = None,
                        video_dir: str | Path | None = None, name: str = "generic_segments") -> FrameLabels:
    files = annotation_files(annotation_dir, what="segment CSV")
    tables = {p: read_segment_csv(p) for p in files}
    names = list(class_names) if class_names is not None else sorted({lab for t in tables.values() for lab in t["label"]})
    index = {n: i for i, n in enumerate(names)}
    videos = video_files(video_dir)
    rows, labels = [], {}
    for path, seg in tables.items():
        vid = path.stem
        if seg.empty:
            raise DataError(f"{path}: video {vid!r} is empty (no segments)")
        lab_idx = lookup_labels(list(seg["label"]), index, path, "label")
        n_video, video_fps, source = frame_count_of(vid, videos)
        duration = float(seg["end"].max())
        if n_video is not None:
            video_duration = n_video / video_fps
            late = np.nonzero((seg["start"] >= video_duration).to_numpy())[0]
            if late.size:
                i = int(late[0])
                raise DataError(f"{path}: line {line_of(i)}: start {seg['start'][i]} s is past the end of "
                                f"video {vid!r} ({source} lasts {video_duration:.2f} s)")
            duration = video_duration
        n = check_length(max(1, math.ceil(duration * fps - 1e-9)), path, vid)
        t = np.arange(n) / fps
        lab = np.full(n, -1, dtype=np.int64)
        for s, e, k in zip(seg["start"], seg["end"], lab_idx, strict=False):
            lab[(t >= s) & (t < e)] = k
        labels[vid] = lab
        rows.append({"video_id": vid, "n_frames": n, "fps": fps, "split": "", "source": source,
                     "annotation": str(path)})
    return FrameLabels(name, "phase", names, pd.DataFrame(rows), labels)


@dataclass
class GenericOptions:
    class_names_file: str | None = None  # one class name per line: fixes the classes and their order
    annotation_fps: float = 1.0  # segments: the rate labels are painted at; image lists: frames per second


@register_adapter("generic_segments", GenericOptions)
def segment_folder_benchmark(cfg: BenchmarkConfig, options: GenericOptions) -> LoadedBenchmark:
    """``root`` is the folder of ``<video_id>.csv`` segment files."""
    phases = load_segment_folder(cfg.root, fps=options.annotation_fps,
                                 class_names=read_class_list(options.class_names_file), video_dir=cfg.video_dir)
    return from_videos(cfg, phases.subset(split=cfg.split))


@register_adapter("generic_images", GenericOptions)
def image_list_benchmark(cfg: BenchmarkConfig, options: GenericOptions) -> LoadedBenchmark:
    """``root`` is the ``path,label`` CSV; the listed images are the frames (no split, no videos)."""
    phases, files = load_image_list(cfg.root, class_names=read_class_list(options.class_names_file),
                                    fps=options.annotation_fps)
    return LoadedBenchmark(phases, None, None, ImageListSource(files))
