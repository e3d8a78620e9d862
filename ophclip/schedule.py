"""Schedules as pure functions of the global step: which level trains, learning rate, momentum.

Both are pure functions of the global step, so a resumed run needs nothing but the step
number to continue on the same schedule.
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

CLIP = "clip"
VIDEO = "video"


class LevelSchedule:
    """Hierarchical schedule: ``video_every`` clip steps, then one video step, repeating.

    ``video_every=0`` trains the clip level only. Levels without data can be switched off
    with ``clip=False`` (a video-only run); the schedule then returns ``"video"`` always.
    """

    def __init__(self, video_every: int, clip: bool = True):
        if video_every < 0:
            raise ValueError(f"video_every must be >= 0, got {video_every}")
        if not clip and video_every == 0:
            raise ValueError("a schedule needs at least one level")
        self.video_every = video_every
        self.clip = clip

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels this schedule ever trains."""
        return tuple(level for level, used in ((CLIP, self.clip), (VIDEO, self.video_every > 0 or not self.clip)) if used)

    def level_at(self, step: int) -> str:
        if not self.clip:
            return VIDEO
        if self.video_every == 0:
            return CLIP
        return VIDEO if step % (self.video_every + 1) == self.video_every else CLIP

    def count(self, level: str, steps: int) -> int:
        """How many of the first ``steps`` steps train ``level``."""
        return sum(self.level_at(s) == level for s in range(steps))


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warmup from 1/warmup to 1, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_between(start: float, end: float, step: int, total: int) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total``), constant after."""
    progress = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
