"""One video probe: what a container says about its first video stream, read with PyAV.

``probe_video(path)`` reads the header only. ``probe_video(path, scan=True)`` also demuxes
every packet (no decoding, so it stays cheap) to count frames and catch truncated files,
which is what ingestion needs before trusting a video. Every failure is a :class:`DataError`
naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av

from .errors import DataError

# A video whose packets stop this much before the declared duration is truncated.
TRUNCATION_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    has_audio: bool


@contextmanager
def open_video(path: str | Path, error: type[Exception] = DataError) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The open container and its first video stream; a missing, empty or unreadable file raises ``error``.

    ``error`` lets a package raise its own subclass of :class:`DataError` (the pipeline
    quarantines ``InputError``; streaming raises ``StreamError``) with the same messages.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes); re-copy or re-export the video")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise error(f"{path}: not a readable video container ({e}); the file is corrupt or truncated") from None
    with container:
        if not container.streams.video:
            raise error(f"{path}: no video stream (an audio-only file?)")
        yield container, container.streams.video[0]


def probe_video(path: str | Path, scan: bool = False) -> VideoInfo:
    """Probe ``path``; with ``scan`` count the packets and reject truncated or empty streams."""
    path = Path(path)
    with open_video(path) as (container, stream):
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        declared = container.duration / 1e6 if container.duration else None
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        has_audio = bool(container.streams.audio)
        if scan:
            n, duration = _scan(path, container, stream, declared)
        else:
            n = int(stream.frames or 0)
            if n == 0 and stream.duration is not None and stream.time_base is not None and fps > 0:
                n = int(round(float(stream.duration * stream.time_base) * fps))
            duration = declared if declared else (n / fps if fps else 0.0)
    if not fps and duration:
        fps = n / duration
    return VideoInfo(float(duration), fps, width, height, n, has_audio)


def _scan(path: Path, container, stream, declared: float | None) -> tuple[int, float]:
    last_t, n = 0.0, 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            n += 1
            last_t = max(last_t, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: demuxing failed after {n} video packets ({e}); the file is truncated or corrupt") from None
    if n == 0:
        raise DataError(f"{path}: the video stream holds no frames")
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    video_end = last_t - start
    if declared is not None and video_end < declared - TRUNCATION_TOLERANCE_S and video_end < 0.9 * declared:
        raise DataError(f"{path}: truncated: video packets end at {video_end:.2f} s but the container declares {declared:.2f} s")
    # Past the truncation check the container's duration is trustworthy (it also covers audio).
    return n, declared if declared else video_end
