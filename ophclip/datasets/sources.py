"""Where frames come from: video files, extracted frame folders, or arrays in memory.

Every source has ``iter_frames(video_id, indices, native_fps, batch_size)`` (the
:class:`FrameSource` protocol) and yields the pixels of exactly the native frames the
labels evaluate (:meth:`FrameLabels.sample_indices`), in chunks, so memory holds one
chunk of frames however long the video. Videos are decoded with PyAV; their frame
counts are read from the container header (:func:`ophbase.video.probe_video`) and
checked against the annotations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from PIL import Image

from data_pipeline.errors import InputError
from data_pipeline.frame_cache import FrameCache, iter_resampled_frames
from ophbase.video import probe_video

from ..errors import DataError
from .labels import FrameLabels
from .parsing import annotation_files, check_annotation_length, natural_key, per_frame_labels

logger = logging.getLogger(__name__)


class FrameSource(Protocol):
    """Yields the pixels of a video's evaluated frames in chunks, in order."""

    def iter_frames(
        self, video_id: str, indices: np.ndarray, native_fps: float, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, frames)``: positions into ``indices``, frames uint8 (B, H, W, 3) RGB."""
        ...


def video_files(video_dir: str | Path | None, suffixes: Sequence[str] = (".mp4", ".avi", ".mkv", ".mov")) -> dict[str, Path]:
    """{file stem: path} of the videos in a folder (empty when no folder is given)."""
    if video_dir is None:
        return {}
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(f"{video_dir}: video folder not found")
    return {p.stem: p for p in sorted(video_dir.iterdir()) if p.suffix.lower() in suffixes}


def frame_count_of(video_id: str, videos: Mapping[str, Path]) -> tuple[int | None, float | None, str]:
    """(frames, fps, source) from the video file when there is one, else (None, None, "")."""
    path = videos.get(video_id)
    if path is None:
        return None, None, ""
    info = probe_video(path)  # the header's count: no decoding
    n, fps = info.n_frames, info.fps
    if n == 0:
        raise DataError(f"{path}: video {video_id!r} is empty (no frames); remove it from the benchmark")
    return n, fps, str(path)


def phase_labels_from_csvs(
    folder: str | Path,
    video_dir: str | Path | None,
    read: Callable[[Path], tuple[np.ndarray, np.ndarray]],
    *,
    what: str,
    frame_column: str,
    fps: float,
    class_names: Sequence[str],
    frame_tolerance: int,
    name: str,
) -> FrameLabels:
    """Per-frame phase labels from a folder of one annotation CSV per video (``read(path) -> (frames, labels)``).

    With ``video_dir`` each video's own frame count and rate are used and checked against its CSV.
    """
    videos = video_files(video_dir)
    rows, labels = [], {}
    for path in annotation_files(folder, what=what):
        vid = path.stem
        frames, lab = read(path)
        n_video, video_fps, source = frame_count_of(vid, videos)
        n = check_annotation_length(frames, n_video, path, vid, source, frame_tolerance)
        labels[vid] = per_frame_labels(frames, lab, n, path, frame_column, vid)
        rows.append({"video_id": vid, "n_frames": n, "fps": video_fps or fps, "split": "", "source": source,
                     "annotation": str(path)})
    return FrameLabels(name, "phase", list(class_names), pd.DataFrame(rows), labels)


def check_video_frame_counts(labels: FrameLabels, tolerance: int = 1) -> None:
    """Each video file's frame count must match its annotations (within ``tolerance`` frames)."""
    for row in labels.videos.itertuples():
        source = str(getattr(row, "source", "") or "")
        if not source or not Path(source).is_file():
            continue
        n = probe_video(source).n_frames
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


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 ``(H, W, 3)``; an unreadable one is a :class:`DataError` naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


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
        files = self.files(video_id)
        file_idx = np.asarray(indices) // self.stride
        positions = np.nonzero(file_idx < len(files))[0]
        for s in range(0, len(positions), batch_size):
            pos = positions[s : s + batch_size]
            frames = []
            for p in pos:
                frames.append(read_rgb(files[int(file_idx[p])]))
            yield pos, stack_frames(frames, self.root / video_id)


def frame_source(labels: FrameLabels, frames_dir: str | Path | None = None, frames_stride: int = 1):
    """Extracted frames when ``frames_dir`` is given, else the video file of each labelled video."""
    if frames_dir is not None:
        return FrameFolderSource(frames_dir, frames_stride)
    paths = {row.video_id: row.source for row in labels.videos.itertuples() if row.source}
    if not paths:
        logger.warning("%s: no video files found (set benchmark.video_dir or benchmark.frames_dir)", labels.name)
    return VideoFileSource(paths)
