"""Stage 8: the frame cache (see :mod:`data_pipeline.frame_cache` for the layout)."""

from __future__ import annotations

import logging
from pathlib import Path

from .cache import cache_key
from .config import FramesConfig
from .frame_cache import cache_video

logger = logging.getLogger(__name__)


def frames_key(sha256: str, cfg: FramesConfig) -> str:
    return cache_key("frames", sha256, cfg.fps, cfg.short_side)


def cache_one(video_id: str, path: str, sha256: str, frames_dir: Path, cfg: FramesConfig) -> dict:
    """Decode one video into ``frames_dir/<video_id>.npy``; return its index row."""
    file = f"{video_id}.npy"
    array = cache_video(path, frames_dir / file, cfg.fps, cfg.short_side)
    t, h, w, _ = array.shape
    return {"video_id": video_id, "file": file, "n_frames": int(t), "fps": float(cfg.fps),
            "height": int(h), "width": int(w), "source_sha256": sha256}
