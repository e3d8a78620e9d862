"""Caption import: SRT, WebVTT, whisper JSON and ``start,end,text`` CSV (PeskaVLP's format).

Every parser returns a list of :class:`~data_pipeline.records.Segment` sorted by time,
or raises :class:`~data_pipeline.errors.InputError` naming the file, the line (or
row) and the problem. Timestamps are checked: a cue that ends before it starts, or
that starts before the previous cue has ended, is an error rather than a silent
fix, because a wrong clip boundary is worse than a quarantined caption file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path

from .errors import InputError
from .records import Segment

logger = logging.getLogger(__name__)

CAPTION_SUFFIXES = (".srt", ".vtt", ".json", ".csv")
# Cues may touch; anything more than this much overlap is reported.
OVERLAP_TOLERANCE_S = 0.01

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_CUE_TIMES = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAGS = re.compile(r"<[^>]*>")


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8 (a BOM is accepted); any other encoding is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: caption file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: captions are not UTF-8 (invalid byte at offset {e.start}); "
            f"re-encode the file, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def load_captions(path: str | Path) -> list[Segment]:
    """Parse a caption file, choosing the format by its suffix."""
    path = Path(path)
    parsers = {".srt": parse_srt, ".vtt": parse_vtt, ".json": parse_whisper_json, ".csv": parse_csv}
    parser = parsers.get(path.suffix.lower())
    if parser is None:
        raise InputError(f"{path}: unknown caption format {path.suffix!r}; expected one of {', '.join(parsers)}")
    return parser(read_text(path), source=str(path))


def find_captions(captions_dir: str | Path, video_id: str) -> Path | None:
    """``<captions_dir>/<video_id>.<srt|vtt|json|csv>``, the first that exists."""
    if not captions_dir:
        return None
    for suffix in CAPTION_SUFFIXES:
        candidate = Path(captions_dir) / f"{video_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _seconds(groups: tuple[str | None, ...]) -> float | None:
    """Seconds from (h, m, s, ms) groups; None when minutes or seconds are out of range."""
    h, m, s, frac = groups
    if int(m) > 59 or int(s) > 59:
        return None
    # Sum integer milliseconds first so 00:00:04,919 is exactly 4.919.
    return (int(h or 0) * 3_600_000 + int(m) * 60_000 + int(s) * 1000 + int(frac.ljust(3, "0"))) / 1000.0


def _clean(text: str) -> str:
    return " ".join(_TAGS.sub("", text).split())


def parse_srt(text: str, source: str = "<srt>") -> list[Segment]:
    """SubRip: blocks of [index], ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text lines, blank line."""
    return _parse_cues(text.splitlines(), source, first_line=0, kind="SRT")


def parse_vtt(text: str, source: str = "<vtt>") -> list[Segment]:
    """WebVTT: a ``WEBVTT`` header, then cues (optional id, times with settings, text); NOTE/STYLE/REGION blocks skipped."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("WEBVTT"):
        raise InputError(f"{source}: line 1: a WebVTT file must start with 'WEBVTT'")
    # Skip the header block.
    i = 1
    while i < len(lines) and lines[i].strip():
        i += 1
    return _parse_cues(lines, source, first_line=i, kind="WebVTT")


def _parse_cues(lines: list[str], source: str, first_line: int, kind: str) -> list[Segment]:
    segments: list[Segment] = []
    i = first_line
    n = len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        block: list[str] = []
        while i < n and lines[i].strip():
            block.append(lines[i])
            i += 1
        if kind == "WebVTT" and block[0].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        # The times line is the first or, after a cue id / SRT index, the second line.
        t = next((k for k in range(min(2, len(block))) if "-->" in block[k]), None)
        if t is None:
            raise InputError(
                f"{source}: line {block_start + 1}: expected a '{'00:00:01,000' if kind == 'SRT' else '00:01.000'} --> ...' "
                f"timing line in this {kind} cue, got {block[0][:60]!r}"
            )
        m = _CUE_TIMES.match(block[t])
        if m is None:
            raise InputError(f"{source}: line {block_start + t + 1}: malformed {kind} timing {block[t][:60]!r}")
        start, end = _seconds(m.groups()[:4]), _seconds(m.groups()[4:])
        if start is None or end is None:
            raise InputError(f"{source}: line {block_start + t + 1}: minutes and seconds must be < 60 in {block[t][:60]!r}")
        segments.append(Segment(start=start, end=end, text=_clean(" ".join(block[t + 1 :]))))
        segments[-1]._line = block_start + t + 1  # type: ignore[attr-defined]  # for error messages
    return validate_segments(segments, source)


def parse_whisper_json(text: str, source: str = "<json>") -> list[Segment]:
    """whisper's ``-f json`` output: ``{"segments": [{"start", "end", "text", ...}]}`` (a bare list also works)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: line {e.lineno}: not valid JSON ({e.msg})") from None
    items = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{source}: expected whisper JSON with a 'segments' list")
    segments = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not {"start", "end", "text"} <= set(item):
            raise InputError(f"{source}: segments[{k}] needs 'start', 'end' and 'text'")
        try:
            start, end = float(item["start"]), float(item["end"])
        except (TypeError, ValueError):
            raise InputError(f"{source}: segments[{k}]: start/end must be numbers") from None
        if not isinstance(item["text"], str):
            raise InputError(f"{source}: segments[{k}]: text must be a string")
        seg = Segment(start=start, end=end, text=_clean(item["text"]))
        for key in ("avg_logprob", "no_speech_prob", "compression_ratio"):
            if isinstance(item.get(key), (int, float)):
                setattr(seg, key, float(item[key]))
        seg._line = f"segments[{k}]"  # type: ignore[attr-defined]
        segments.append(seg)
    return validate_segments(segments, source)


def parse_csv(text: str, source: str = "<csv>") -> list[Segment]:
    """A header row with ``start,end,text`` (other columns ignored); times in seconds."""
    try:
        return _parse_csv_rows(csv.DictReader(io.StringIO(text, newline="")), source)
    except csv.Error as e:
        raise InputError(f"{source}: not a valid CSV ({e})") from None


def _parse_csv_rows(reader: csv.DictReader, source: str) -> list[Segment]:
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if not {"start", "end", "text"} <= set(fields):
        raise InputError(f"{source}: line 1: expected a header with start,end,text columns, got {fields}")
    reader.fieldnames = fields
    segments = []
    for row in reader:
        line = reader.line_num
        if None in row or any(row.get(k) is None for k in ("start", "end", "text")):
            raise InputError(f"{source}: line {line}: wrong number of fields")
        try:
            start, end = float(row["start"]), float(row["end"])
        except ValueError:
            raise InputError(f"{source}: line {line}: start/end must be seconds, got {row['start']!r}, {row['end']!r}") from None
        seg = Segment(start=start, end=end, text=_clean(row["text"]))
        seg._line = line  # type: ignore[attr-defined]
        segments.append(seg)
    return validate_segments(segments, source)


def validate_segments(segments: list[Segment], source: str) -> list[Segment]:
    """Check times are finite, non-negative, not reversed and not overlapping; drop empty cues."""
    out: list[Segment] = []
    prev_end = -math.inf
    for seg in segments:
        where = f"line {seg._line}" if isinstance(getattr(seg, "_line", None), int) else getattr(seg, "_line", "cue")
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)) or seg.start < 0:
            raise InputError(f"{source}: {where}: times must be finite and >= 0, got {seg.start} --> {seg.end}")
        if seg.end < seg.start:
            raise InputError(
                f"{source}: {where}: reversed timestamps ({seg.start:.3f} --> {seg.end:.3f} s); the end must not precede the start"
            )
        if seg.start < prev_end - OVERLAP_TOLERANCE_S:
            raise InputError(
                f"{source}: {where}: cue starts at {seg.start:.3f} s, before the previous cue ends ({prev_end:.3f} s); "
                f"overlapping captions are not supported, merge or re-time them"
            )
        prev_end = max(prev_end, seg.end)
        if hasattr(seg, "_line"):
            del seg._line
        if seg.text:
            out.append(seg)
    return out
