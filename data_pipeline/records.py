"""The small records passed between stages (plain dataclasses, JSON-friendly)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float = math.nan


@dataclass
class Segment:
    """One ASR or caption segment; times in seconds from the start of the video."""

    start: float
    end: float
    text: str
    avg_logprob: float = math.nan  # NaN for captions: they carry no model scores
    no_speech_prob: float = math.nan
    compression_ratio: float = math.nan
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Segment:
        words = [Word(**w) for w in d.get("words", [])]
        return cls(**{**d, "words": words})
