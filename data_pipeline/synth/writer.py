"""Output writers: mp4 (PyAV), SRT, and the annotation files in the real benchmarks' formats.

Kept apart from the logic (whisper's ``utils.get_writer`` pattern). Every file is
written atomically (:mod:`ophbase.io`: a temporary name, then ``os.replace``).

Frame numbers are 0-based indices of the mp4's decoded frames (frame k is shown at
k / fps seconds), in Cataract-101's ``FrameNo`` and in CATARACTS' ``Frame`` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import numpy as np

from ophbase.io import atomic_path, atomic_write_text

from .taxonomy import ALL_TOOLS

AUDIO_FRAME = 1024  # samples per AAC frame


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: int, width: int, height: int,
              audio: np.ndarray | None, sample_rate: int, qp: int, metadata: dict[str, str]) -> int:
    """Encode RGB frames as H.264 (+ mono AAC when ``audio`` is given); return the frame count.

    The output is byte-identical for identical input: one encoder thread and a constant
    quantiser. (x264's default CRF rate control runs the macroblock-tree lookahead, whose
    SIMD code reads uninitialised padding: the same frames then encode differently from
    run to run. Constant QP does not use it.)
    """
    n = 0
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        for key, value in metadata.items():
            out.metadata[key] = value
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        vs.codec_context.thread_count = 1
        vs.options = {"qp": str(qp), "preset": "veryfast", "g": str(4 * fps)}
        if audio is not None:
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = "mono"
            aus.bit_rate = 48000
            pcm = np.ascontiguousarray(audio, dtype=np.float32)
            for start in range(0, len(pcm), AUDIO_FRAME):
                chunk = pcm[start:start + AUDIO_FRAME][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
        for img in frames:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            for packet in vs.encode(frame):
                out.mux(packet)
            n += 1
        for packet in vs.encode():
            out.mux(packet)
    return n


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(path: str | Path, cues: Sequence[tuple[float, float, str]]) -> None:
    blocks = [f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    atomic_write_text(path, "\n".join(blocks))


def write_tools_csv(path: str | Path, presence: np.ndarray) -> None:
    """CATARACTS' format: ``Frame`` then one 0/1 column per tool (ALL_TOOLS order), comma-separated."""
    header = ",".join(("Frame",) + ALL_TOOLS)
    lines = [header] + [f"{i}," + ",".join(map(str, row)) for i, row in enumerate(presence.tolist())]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_semicolon_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Cataract-101's ``;``-separated tables."""
    lines = [";".join(header)] + [";".join(str(v) for v in row) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
