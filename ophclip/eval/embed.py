"""Frame and video embeddings of a benchmark's videos, streamed through the model.

:func:`embed_videos` streams each video's evaluated frames from a frame source in
chunks of ``batch_size`` (``preprocess_eval`` -> ``encode_image``, no_grad, bf16
autocast on a GPU that supports it). Only the (D,) embedding of each frame is kept,
so memory does not grow with video length beyond T x D floats. A few frames per video
(``video_frames``, evenly spaced) are also kept, preprocessed, for the video-level
embedding (``encode_video``).

The labels and frame sources are duck-typed (:class:`ophclip.datasets.FrameLabels` and
the ``*Source`` classes of :mod:`ophclip.datasets.sources`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ophbase.device import module_device

from ..errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class VideoEmbeddings:
    """Frame and video embeddings of a benchmark's videos (L2-normalised, float32, CPU)."""

    frame_index: dict[str, np.ndarray] = field(default_factory=dict)  # native frame index of each row
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # (n, D)
    videos: dict[str, np.ndarray] = field(default_factory=dict)  # (D,)
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return sum(len(v) for v in self.frames.values())

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / self.seconds if self.seconds > 0 else float("nan")


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _as_batch(preprocess, frames: np.ndarray) -> torch.Tensor:
    x = preprocess(frames)
    if not torch.is_tensor(x) or x.ndim != 4:
        raise DataError(f"preprocess_eval returned {type(x).__name__} {getattr(x, 'shape', '')}; expected (T, 3, S, S)")
    return x


@torch.no_grad()
def embed_videos(
    model,
    preprocess,
    source,
    labels,
    fps: float | None = 1.0,
    batch_size: int = 32,
    video_frames: int = 8,
    video_ids: list[str] | None = None,
    progress: bool = True,
) -> VideoEmbeddings:
    """Stream every video's evaluated frames through ``model.encode_image`` (see module docstring)."""
    model.eval()
    device = module_device(model)
    out = VideoEmbeddings()
    ids = video_ids if video_ids is not None else labels.video_ids
    start = time.perf_counter()
    bar = tqdm(ids, desc="embedding videos", unit="video", disable=not progress)
    for vid in bar:
        row = labels.video(vid)
        indices = labels.sample_indices(vid, fps)
        if len(indices) == 0:
            raise DataError(f"{row.get('annotation', labels.name)}: video {vid!r} is empty (0 frames to evaluate)")
        keep_for_video = set(np.linspace(0, len(indices) - 1, min(video_frames, len(indices))).round().astype(int).tolist())
        emb = np.zeros((len(indices), 0), dtype=np.float32)
        seen = np.zeros(len(indices), dtype=bool)
        clip_frames: dict[int, torch.Tensor] = {}
        for positions, frames in source.iter_frames(vid, indices, float(row["fps"]), batch_size):
            x = _as_batch(preprocess, frames)
            with _autocast(device):
                e = model.encode_image(x.to(device), normalize=True)
            e = torch.nn.functional.normalize(e.float(), dim=-1).cpu().numpy()
            if emb.shape[1] == 0:
                emb = np.zeros((len(indices), e.shape[1]), dtype=np.float32)
            emb[positions] = e
            seen[positions] = True
            for j, p in enumerate(positions.tolist()):
                if p in keep_for_video:
                    clip_frames[p] = x[j]
            bar.set_postfix(frames=int(seen.sum()))
        if not seen.any():
            raise DataError(f"{row.get('source') or vid}: no frames could be read for video {vid!r}")
        out.frame_index[vid] = indices[seen]
        out.frames[vid] = emb[seen]
        clip = torch.stack([clip_frames[p] for p in sorted(clip_frames)]).unsqueeze(0).to(device)
        with _autocast(device):
            v = model.encode_video(clip, normalize=True)
        out.videos[vid] = torch.nn.functional.normalize(v.float(), dim=-1)[0].cpu().numpy()
    out.seconds = time.perf_counter() - start
    logger.info("embedded %d frames of %d videos in %.1f s (%.1f frames/s)",
                out.n_frames, len(ids), out.seconds, out.frames_per_second)
    return out

