"""Segment writers (srt, vtt, json), kept apart from the stages as in whisper's ``utils.get_writer``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ophbase.io import atomic_write_text

from .records import Segment


def format_timestamp(seconds: float, decimal_marker: str = ",", always_hours: bool = True) -> str:
    millis = round(seconds * 1000.0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{format_timestamp(s.start, '.', False)} --> {format_timestamp(s.end, '.', False)}\n{s.text.strip()}\n"
        for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(segments: Sequence[Segment]) -> str:
    return json.dumps({"segments": [s.to_dict() for s in segments]}, indent=1)


def to_csv(segments: Sequence[Segment]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["start", "end", "text"])
    for s in segments:
        w.writerow([f"{s.start:.3f}", f"{s.end:.3f}", s.text])
    return buf.getvalue()


WRITERS: dict[str, Callable[[Sequence[Segment]], str]] = {"srt": to_srt, "vtt": to_vtt, "json": to_json, "csv": to_csv}


def get_writer(fmt: str) -> Callable[[Sequence[Segment], str | Path], None]:
    """A function writing segments to a file in ``fmt`` (srt, vtt, json, csv), atomically."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown caption format {fmt!r}; known: {', '.join(WRITERS)}")
    render = WRITERS[fmt]

    def write(segments: Sequence[Segment], path: str | Path) -> None:
        atomic_write_text(path, render(segments))

    return write
