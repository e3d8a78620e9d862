"""The per-frame label contract every benchmark adapter produces, and where frames come from.

An adapter reads an annotated dataset in its *native* format and returns a
:class:`FrameLabels`: one label array per video at the annotation's own frame rate,
plus the class names. Two tasks share the type:

* ``task="phase"``: ``labels[video_id]`` is an int array (n_frames,) of class
  indices into ``class_names``; ``-1`` marks a frame with no label (not scored).
* ``task="tools"``: ``labels[video_id]`` is an int8 array (n_frames, n_tools) of
  0/1; ``-1`` marks a frame-tool pair that is not scored (e.g. CATARACTS' 0.5
  under ``half_as="ignore"``).

``FrameLabels.frame_table(fps)`` gives the DESIGN.md table
``video_id, frame_index, time_s, label`` at an evaluation rate; the frame sources
below yield the pixels of exactly those frames, decoded with PyAV from the
dataset's videos, read from extracted frame folders, or from in-memory arrays.

Video-level labels (surgery type) are a :class:`VideoLabels`.

CSV helpers here turn every parse problem into :class:`DataError` naming the
file, the row (as a 1-based line number of the file) and what to do.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from ophclip.errors import DataError

logger = logging.getLogger(__name__)

# Frame numbers from float arithmetic are nudged by this before flooring, so that
# k * 25 / 5 lands on the integer it is and not one below.
_EPS = 1e-6
_INT_RE = r"^[+-]?\d{1,18}(\.0*)?$"  # "12" or "12.0"; 18 digits fit int64
# No surgery video has more frames than this (about 23 days at 25 fps); a larger number is a typo
# and would otherwise allocate a label array of that size.
MAX_FRAMES = 50_000_000


# --------------------------------------------------------------------------- labels


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


# --------------------------------------------------------------------------- CSV parsing


def read_table(
    path: str | Path,
    required: Sequence[str],
    sep: str = ",",
    what: str = "annotation file",
) -> pd.DataFrame:
    """Read a CSV as strings, tolerating a UTF-8 BOM and CRLF; check the header.

    Raises :class:`DataError` naming ``path`` for a missing file, bytes that are
    not UTF-8, a malformed table, or missing columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; check the dataset root (see benchmarks' docs for the layout)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: {what} is empty; expected a header with columns {list(required)}")
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header (and drops them); that is an error here.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, ValueError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as '{sep}'-separated table ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; header is {list(df.columns)}, expected {list(required)} "
            f"separated by {sep!r}"
        )
    return df


def line_of(row: int) -> int:
    """1-based file line of 0-based data row ``row`` (the header is line 1)."""
    return row + 2


def parse_int(value: str, path: Path | str, row: int, column: str, minimum: int | None = 0) -> int:
    text = str(value).strip()
    # "12" and "12.0" (a float-typed export) are integers; "12.5", "", "1e3" are not.
    if not re.fullmatch(_INT_RE, text):
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not an integer (of at most 18 digits)")
    out = int(text.split(".")[0])
    if minimum is not None and out < minimum:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {out} is below {minimum}")
    return out


def parse_float(value: str, path: Path | str, row: int, column: str, minimum: float | None = 0.0) -> float:
    try:
        out = float(str(value).strip())
    except ValueError:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not a number") from None
    if not math.isfinite(out):
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not a finite number")
    if minimum is not None and out < minimum:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {out} is below {minimum}")
    return out


def int_column(df: pd.DataFrame, column: str, path: Path | str, minimum: int | None = 0) -> np.ndarray:
    """A column of integers; the first bad cell raises :class:`DataError` with its line."""
    text = df[column].astype(str).str.strip()
    ok = text.str.match(_INT_RE)
    if ok.all():
        # Vectorised path for large files (Cataract-101: 1,266 rows; OphNet: 17,508).
        values = text.str.split(".").str[0].astype(np.int64).to_numpy()
        if minimum is None or (values >= minimum).all():
            return values
    return np.array([parse_int(v, path, i, column, minimum) for i, v in enumerate(df[column])], dtype=np.int64)


def float_column(df: pd.DataFrame, column: str, path: Path | str, minimum: float | None = 0.0) -> np.ndarray:
    """A column of finite numbers; the first bad cell raises :class:`DataError` with its line."""
    values = pd.to_numeric(df[column].astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(values).all() and (minimum is None or (values >= minimum).all()):
        return values
    return np.array([parse_float(v, path, i, column, minimum) for i, v in enumerate(df[column])], dtype=np.float64)


def lookup_labels(
    values: Sequence[str], class_index: Mapping[str, int], path: Path | str, column: str
) -> np.ndarray:
    """Map label strings to class indices; an unknown label names file, line and the known classes."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = str(value).strip()
        if key not in class_index:
            known = ", ".join(map(repr, list(class_index)[:20]))
            raise DataError(
                f"{path}: line {line_of(i)}: unknown label {key!r} in column {column!r}; known classes: {known}. "
                "Fix the row or pass the dataset's class list"
            )
        out[i] = class_index[key]
    return out


def check_increasing(frames: np.ndarray, path: Path | str, column: str, lines: np.ndarray | None = None) -> None:
    """Frames must strictly increase; ``lines`` gives each row's file line (default: row + 2)."""
    bad = np.nonzero(np.diff(frames) <= 0)[0]
    if bad.size:
        i = int(bad[0]) + 1
        line = int(lines[i]) if lines is not None else line_of(i)
        raise DataError(
            f"{path}: line {line}: {column} {frames[i]} does not increase after {frames[i - 1]}; "
            "rows must be sorted by frame with no repeats"
        )


def check_within(
    frames: np.ndarray, n_frames: int, path: Path | str, column: str, video: str, lines: np.ndarray | None = None
) -> None:
    """Frame indices must lie inside the video (0 .. n_frames-1)."""
    if n_frames <= 0:
        raise DataError(f"{path}: video {video!r} is empty (0 frames); remove it or fix its frame count")
    bad = np.nonzero(frames >= n_frames)[0]
    if bad.size:
        i = int(bad[0])
        line = int(lines[i]) if lines is not None else line_of(i)
        raise DataError(
            f"{path}: line {line}: {column} {frames[i]} is past the end of video {video!r}, "
            f"which has {n_frames} frames (0..{n_frames - 1})"
        )


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------- frame sources


class FrameSource(Protocol):
    """Yields the pixels of a video's evaluated frames in chunks, in order."""

    def iter_frames(
        self, video_id: str, indices: np.ndarray, native_fps: float, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, frames)``: positions into ``indices``, frames uint8 (B, H, W, 3) RGB."""
        ...


def probe_video(path: str | Path) -> tuple[int, float]:
    """(frame count, fps) of a video's first video stream, read with PyAV from the container header."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: video file is empty (0 bytes); remove it or re-export the video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            n = int(stream.frames or 0)
            if n == 0 and stream.duration is not None and stream.time_base is not None and fps > 0:
                n = int(round(float(stream.duration * stream.time_base) * fps))
    except DataError:
        raise
    except Exception as e:  # PyAV raises a family of FFmpeg errors; all mean "unreadable"
        raise DataError(f"{path}: cannot read video ({e})") from None
    return n, fps


def check_video_frame_counts(labels: FrameLabels, tolerance: int = 1) -> None:
    """Each video file's frame count must match its annotations (within ``tolerance`` frames)."""
    for row in labels.videos.itertuples():
        source = str(getattr(row, "source", "") or "")
        if not source or not Path(source).is_file():
            continue
        n, _ = probe_video(source)
        if n == 0:
            raise DataError(f"{source}: video {row.video_id!r} is empty (no frames); remove it from the benchmark")
        if abs(n - int(row.n_frames)) > tolerance:
            raise DataError(
                f"{source}: video {row.video_id!r} has {n} frames but its annotations ({row.annotation}) "
                f"describe {int(row.n_frames)}; the annotation belongs to another cut of the video, or the file is truncated"
            )


class VideoFileSource:
    """Decode each video with PyAV and keep only the evaluated frames; memory is one chunk of frames."""

    def __init__(self, paths: Mapping[str, str | Path], short_side: int | None = None):
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.short_side = short_side

    def iter_frames(self, video_id, indices, native_fps, batch_size):
        from data_pipeline.errors import InputError
        from data_pipeline.frame_cache import iter_resampled_frames

        path = self.paths.get(video_id)
        if path is None:
            raise DataError(f"no video file for {video_id!r}; give the benchmark's video folder")
        if not path.is_file():
            raise DataError(f"{path}: video file for {video_id!r} not found")
        if len(indices) == 0:
            return
        wanted = {int(ix): pos for pos, ix in enumerate(indices)}
        last = int(indices[-1])
        # Resample on the annotation's timeline (frame k at k / native_fps), so a file whose
        # container rate differs slightly still lines up with its labels by time.
        fps_out = native_fps
        buf_pos: list[int] = []
        buf: list[np.ndarray] = []
        seen = 0
        try:
            for k, frame in enumerate(iter_resampled_frames(path, fps_out, self.short_side)):
                pos = wanted.get(k)
                if pos is None:
                    if k > last:
                        break
                    continue
                buf_pos.append(pos)
                buf.append(frame)
                seen += 1
                if len(buf) == batch_size:
                    yield np.array(buf_pos), np.stack(buf)
                    buf_pos, buf = [], []
        except InputError as e:
            raise DataError(str(e)) from None
        if buf:
            yield np.array(buf_pos), np.stack(buf)
        if seen < len(indices):
            logger.warning("%s: decoded %d of %d annotated frames; the rest are not scored", path, seen, len(indices))


class ArraySource:
    """Frames already in memory or memory-mapped: {video_id: uint8 (T, H, W, 3)} at the native rate."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = dict(arrays)

    @classmethod
    def from_frame_cache(cls, root: str | Path) -> ArraySource:
        """The pipeline's frame cache (``frames/<video_id>.npy``), memory-mapped."""
        from data_pipeline.frame_cache import FrameCache

        cache = FrameCache(root)
        return cls({v: cache.frames(v) for v in cache.index["video_id"]})

    def iter_frames(self, video_id, indices, native_fps, batch_size):
        arr = self.arrays.get(video_id)
        if arr is None:
            raise DataError(f"no frames for video {video_id!r} in this frame source")
        if len(arr) == 0:
            raise DataError(f"video {video_id!r} is empty (0 frames)")
        valid = np.asarray(indices) < len(arr)
        if not valid.all():
            logger.warning("video %s: %d annotated frames lie past its %d frames; not scored",
                           video_id, int((~valid).sum()), len(arr))
        positions = np.nonzero(valid)[0]
        for s in range(0, len(positions), batch_size):
            pos = positions[s : s + batch_size]
            yield pos, np.ascontiguousarray(arr[np.asarray(indices)[pos]])


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def stack_frames(frames: list[np.ndarray], where: Path | str) -> np.ndarray:
    """One (B, H, W, 3) array; images of different sizes in one video are an error naming the folder."""
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise DataError(f"{where}: frames of one video differ in size {sorted(shapes)}; extract them at one size")
    return np.stack(frames)


class FrameFolderSource:
    """Extracted frames: ``<root>/<video_id>/<any name with a number>.jpg|png``, one per native frame.

    Files are ordered by the numbers in their names (``frame_2`` before ``frame_10``);
    file i is native frame ``i * stride`` (``stride`` > 1 when frames were extracted
    sparsely, e.g. 25 for 1 frame/s from a 25 fps video). Frames that were not
    extracted show the last extracted one before them.
    """

    def __init__(self, root: str | Path, stride: int = 1):
        self.root = Path(root)
        self.stride = stride

    def files(self, video_id: str) -> list[Path]:
        folder = self.root / video_id
        if not folder.is_dir():
            raise DataError(f"{folder}: frame folder for video {video_id!r} not found")
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"{folder}: video {video_id!r} is empty (no {'/'.join(IMAGE_SUFFIXES)} images)")
        return files

    def iter_frames(self, video_id, indices, native_fps, batch_size):
        from PIL import Image

        files = self.files(video_id)
        file_idx = np.asarray(indices) // self.stride
        positions = np.nonzero(file_idx < len(files))[0]
        for s in range(0, len(positions), batch_size):
            pos = positions[s : s + batch_size]
            frames = []
            for p in pos:
                path = files[int(file_idx[p])]
                try:
                    with Image.open(path) as im:
                        frames.append(np.asarray(im.convert("RGB")))
                except OSError as e:
                    raise DataError(f"{path}: cannot read image ({e})") from None
            yield pos, stack_frames(frames, self.root / video_id)


# --------------------------------------------------------------------------- per-frame CSVs


def read_frame_column(df: pd.DataFrame, path: Path | str, column: str, frame_base: int) -> np.ndarray:
    """The frame column as 0-based indices, strictly increasing."""
    frames = int_column(df, column, path, minimum=frame_base) - frame_base
    check_increasing(frames, path, column)
    return frames


def per_frame_labels(
    frames: np.ndarray, values: np.ndarray, n_frames: int | None, path: Path | str, column: str, video: str
) -> np.ndarray:
    """Scatter row values (1-D labels or 2-D multi-hot) onto a per-frame array; unlisted frames get -1."""
    if len(frames) == 0:
        raise DataError(f"{path}: video {video!r} is empty (no annotated frames)")
    n = check_length(int(frames[-1]) + 1 if n_frames is None else n_frames, path, video)
    check_within(frames, n, path, column, video)
    shape = (n,) if values.ndim == 1 else (n, values.shape[1])
    out = np.full(shape, -1, dtype=np.int64 if values.ndim == 1 else np.int8)
    out[frames] = values
    return out


def video_files(video_dir: str | Path | None, suffixes: Sequence[str] = (".mp4", ".avi", ".mkv", ".mov")) -> dict[str, Path]:
    """{file stem: path} of the videos in a folder (empty when no folder is given)."""
    if video_dir is None:
        return {}
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(f"{video_dir}: video folder not found")
    return {p.stem: p for p in sorted(video_dir.iterdir()) if p.suffix.lower() in suffixes}


def annotation_files(folder: str | Path, pattern: str = "*.csv", what: str = "annotation") -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    files = sorted(folder.glob(pattern), key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no {what} files matching {pattern!r}")
    return files


def frame_count_of(video_id: str, videos: Mapping[str, Path]) -> tuple[int | None, float | None, str]:
    """(frames, fps, source) from the video file when there is one, else (None, None, "")."""
    path = videos.get(video_id)
    if path is None:
        return None, None, ""
    n, fps = probe_video(path)
    if n == 0:
        raise DataError(f"{path}: video {video_id!r} is empty (no frames); remove it from the benchmark")
    return n, fps, str(path)


def check_annotation_length(
    frames: np.ndarray, n_video: int | None, path: Path, video_id: str, source: str, tolerance: int
) -> int:
    """The frame count to use: the video's, after checking the annotated ``frames`` fit it."""
    if len(frames) == 0:
        raise DataError(f"{path}: video {video_id!r} is empty (no annotated frames)")
    n_annot = int(frames[-1]) + 1
    if n_video is None:
        return n_annot
    if n_annot > n_video:
        raise DataError(
            f"{path}: line {line_of(len(frames) - 1)}: frame {n_annot - 1} is past the end of video {video_id!r} "
            f"({source} has {n_video} frames)"
        )
    if n_video - n_annot > tolerance:
        raise DataError(
            f"{source}: video {video_id!r} has {n_video} frames but {path} annotates {n_annot}; "
            "the annotation belongs to another cut of the video, or is truncated"
        )
    return n_video
