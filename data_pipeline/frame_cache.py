"""The frame cache: every video decoded once into small uint8 arrays the trainer reads fast.

Layout under ``<dataset root>/frames/``::

    <video_id>.npy      uint8 array (T, H, W, 3), RGB, frame i shown at time i / fps
    index.parquet       video_id, file, n_frames, fps, height, width, source_sha256

``.npy`` files are opened with ``mmap_mode="r"``, so sampling a few frames of a clip
touches only those frames' pages. The training hot path never decodes an mp4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pandas as pd

from ophbase.io import atomic_path, atomic_write_parquet
from ophbase.video import open_video

from .errors import InputError

INDEX_FILE = "index.parquet"
INDEX_COLUMNS = ["video_id", "file", "n_frames", "fps", "height", "width", "source_sha256"]


def iter_resampled_frames(path: str | Path, fps: float, short_side: int | None) -> Iterator[np.ndarray]:
    """Decode ``path`` with PyAV and yield RGB uint8 frames at a fixed ``fps``.

    Output frame k is the last decoded frame whose timestamp is <= k / fps, so the
    cache is a causal, constant-rate view of the video whatever its source rate.
    ``short_side`` rescales so that min(H, W) == short_side (None keeps the size).
    """
    path = Path(path)
    with open_video(path, InputError) as (container, stream):
        stream.thread_type = "AUTO"
        size = None
        prev, prev_t = None, 0.0
        k = 0  # next output frame; it is shown at time k / fps
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else prev_t
                if size is None:
                    size = _target_size(frame.width, frame.height, short_side)
                # Output frames before this frame's timestamp show the previous frame.
                while prev is not None and k / fps < t - 1e-6:
                    yield prev
                    k += 1
                prev, prev_t = frame.to_ndarray(format="rgb24", width=size[0], height=size[1]), t
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: decoding failed near {prev_t:.2f} s ({e})") from None
        if prev is None:
            raise InputError(f"{path}: the video stream holds no frames")
        # The last frame is shown for one source-frame interval.
        src_rate = float(stream.average_rate) if stream.average_rate else fps
        while k / fps < prev_t + 1.0 / src_rate - 1e-6:
            yield prev
            k += 1


def _target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    # Even sizes keep every codec and resize path happy.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def cache_video(path: str | Path, out_file: str | Path, fps: float, short_side: int | None) -> np.ndarray:
    """Decode one video into ``out_file`` (.npy, written atomically); return the array's shape info."""
    frames = list(iter_resampled_frames(path, fps, short_side))
    if not frames:
        raise InputError(f"{path}: no frames decoded")
    array = np.stack(frames)
    with atomic_path(out_file, suffix=".npy") as tmp:  # np.save appends .npy to any other name
        np.save(tmp, array)
    return array


def write_index(frames_dir: str | Path, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    atomic_write_parquet(Path(frames_dir) / INDEX_FILE, df)


class FrameCache:
    """Read access to ``<root>/frames``. Arrays are memory-mapped and opened lazily."""

    def __init__(self, root: str | Path):
        root = Path(root)
        self.dir = root / "frames" if (root / "frames" / INDEX_FILE).is_file() else root
        index_path = self.dir / INDEX_FILE
        if not index_path.is_file():
            raise InputError(f"{index_path} not found: no frame cache here (run the pipeline's frames stage)")
        self.index = pd.read_parquet(index_path).set_index("video_id", drop=False)
        self._open: dict[str, np.ndarray] = {}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index.index

    def __len__(self) -> int:
        return len(self.index)

    def fps(self, video_id: str) -> float:
        return float(self._row(video_id)["fps"])

    def n_frames(self, video_id: str) -> int:
        return int(self._row(video_id)["n_frames"])

    def frames(self, video_id: str) -> np.ndarray:
        """The whole (T, H, W, 3) uint8 array, memory-mapped."""
        arr = self._open.get(video_id)
        if arr is None:
            row = self._row(video_id)
            file = self.dir / row["file"]
            if not file.is_file():
                raise InputError(f"{file}: frame-cache entry for video {video_id!r} is listed but missing; rerun the frames stage")
            arr = np.load(file, mmap_mode="r")
            self._open[video_id] = arr
        return arr

    def get(self, video_id: str, indices: np.ndarray | list[int]) -> np.ndarray:
        """Frames at ``indices`` (clipped into range) as a fresh (N, H, W, 3) array."""
        arr = self.frames(video_id)
        idx = np.clip(np.asarray(indices, dtype=np.int64), 0, len(arr) - 1)
        return np.ascontiguousarray(arr[idx])

    def indices_between(self, video_id: str, start: float, end: float, n: int) -> np.ndarray:
        """``n`` evenly spaced frame indices covering [start, end) seconds."""
        fps = self.fps(video_id)
        last = self.n_frames(video_id) - 1
        lo = min(max(int(np.floor(start * fps)), 0), last)
        hi = min(max(int(np.ceil(end * fps)) - 1, lo), last)
        return np.linspace(lo, hi, n).round().astype(np.int64)

    def _row(self, video_id: str) -> pd.Series:
        try:
            return self.index.loc[video_id]
        except KeyError:
            raise InputError(
                f"video {video_id!r} has no entry in the frame cache {self.dir}; rerun the frames stage"
            ) from None
