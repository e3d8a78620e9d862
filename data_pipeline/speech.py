"""Stage 3: narrated or silent, from the speech that survived the ASR guards.

The speech counted is every segment that the no-speech guard did not reject: with
faster-whisper's VAD on, the decoder only sees speech regions, so a segment dropped for
a low log-prob or a repetition loop is badly transcribed speech, not silence (its text
is still not used). Audio with no speech yields no segments at all.

A video is *narrated* when its kept segments cover at least ``min_speech_coverage``
of its duration and add up to at least ``min_speech_s`` seconds; otherwise it is
*silent* and joins the silent pool (the memory bank's source). A video with no
audio stream and no captions is silent without running ASR.
"""

from __future__ import annotations

from .config import SpeechConfig
from .manifests import NARRATED, SILENT
from .records import Segment


def speech_seconds(segments: list[Segment]) -> float:
    """Length of the union of the segments' spans (overlaps counted once)."""
    total, cur_start, cur_end = 0.0, None, None
    for s in sorted(segments, key=lambda s: s.start):
        if cur_end is None or s.start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s.start, s.end
        else:
            cur_end = max(cur_end, s.end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def classify(kept: list[Segment], duration_s: float, cfg: SpeechConfig) -> tuple[str, float, float]:
    """(kind, speech_s, coverage)."""
    speech = speech_seconds(kept)
    coverage = speech / duration_s if duration_s > 0 else 0.0
    kind = NARRATED if coverage >= cfg.min_speech_coverage and speech >= cfg.min_speech_s else SILENT
    return kind, speech, coverage
