"""Stage 7: sentences from segments, and sentences merged into clip units.

:func:`split_sentences` cuts a segment at sentence-final punctuation. With word
timestamps each sentence gets the exact times of its first and last word; without
them the segment's span is shared out in proportion to characters.
:func:`merge_into_clips` then joins neighbouring sentences until a clip lasts at least
``min_clip_s``, never beyond ``max_clip_s`` and never across a pause longer than
``max_gap_s``; a sentence longer than ``max_clip_s`` is cut at word boundaries.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from .records import Segment

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Sentence:
    start: float
    end: float
    text: str
    seg_index: int  # which segment of the video it came from


def split_sentences(seg: Segment, seg_index: int = 0) -> list[Sentence]:
    if seg.words:
        out, current = [], []
        for w in seg.words:
            current.append(w)
            if _SENTENCE_END.search(w.word):
                out.append(current)
                current = []
        if current:
            out.append(current)
        return [
            Sentence(ws[0].start, ws[-1].end, " ".join(w.word for w in ws).strip(), seg_index)
            for ws in out
            if " ".join(w.word for w in ws).strip()
        ]
    parts = [p for p in _SENTENCE_SPLIT.split(seg.text.strip()) if p]
    if len(parts) <= 1:
        return [Sentence(seg.start, seg.end, seg.text.strip(), seg_index)] if seg.text.strip() else []
    total = sum(len(p) for p in parts)
    out, t = [], seg.start
    for p in parts:
        d = (seg.end - seg.start) * len(p) / total
        out.append(Sentence(t, t + d, p, seg_index))
        t += d
    out[-1].end = seg.end  # no rounding drift at the end
    return out


def _cut_long(s: Sentence, max_clip_s: float) -> list[Sentence]:
    duration = s.end - s.start
    if duration <= max_clip_s:
        return [s]
    words = s.text.split()
    pieces = min(math.ceil(duration / max_clip_s), max(1, len(words)))
    out = []
    for k in range(pieces):
        ws = words[round(k * len(words) / pieces) : round((k + 1) * len(words) / pieces)]
        out.append(Sentence(s.start + k * duration / pieces, s.start + (k + 1) * duration / pieces, " ".join(ws), s.seg_index))
    return out


@dataclass
class ClipUnit:
    start: float
    end: float
    text: str
    n_sentences: int


def merge_into_clips(sentences: list[Sentence], min_clip_s: float = 4.0, max_clip_s: float = 20.0, max_gap_s: float = 3.0) -> list[ClipUnit]:
    """Greedy left-to-right merge of time-ordered sentences into clips (exact sentence times kept)."""
    pieces = [p for s in sorted(sentences, key=lambda s: s.start) for p in _cut_long(s, max_clip_s)]
    clips: list[ClipUnit] = []
    for s in pieces:
        if clips:
            last = clips[-1]
            short = last.end - last.start < min_clip_s
            if short and s.start - last.end <= max_gap_s and s.end - last.start <= max_clip_s:
                last.end = max(last.end, s.end)
                last.text = f"{last.text} {s.text}"
                last.n_sentences += 1
                continue
        clips.append(ClipUnit(s.start, s.end, s.text, 1))
    # A short last clip joins its predecessor when that still fits.
    if len(clips) >= 2:
        a, b = clips[-2], clips[-1]
        if b.end - b.start < min_clip_s and b.start - a.end <= max_gap_s and b.end - a.start <= max_clip_s:
            clips[-2:] = [ClipUnit(a.start, b.end, f"{a.text} {b.text}", a.n_sentences + b.n_sentences)]
    return clips
