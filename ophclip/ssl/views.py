"""Multi-crop clip views from the frame cache (SVT's spatio-temporal views), text never read.

One sample is one video of the dataset root (silent pool and/or narrated videos). From it,
``global_views`` clips of ``global_frames`` frames and ``local_views`` clips of
``local_frames`` frames are drawn. Each view has its own temporal span (seconds, uniform in
the configured range, clipped to the video) and start, with its frames spread evenly over
the span, so two views of equal length differ in sampling rate; and its own spatial crop,
the same for every frame of the view (a view stays a coherent clip of one region).

With ``window_s`` set, every view of a sample lies inside one window of that many seconds
at a random position. SVT draws views anywhere in a video because its labels (actions) hold
for a whole video; a surgery's phases change every few seconds, and views from different
phases taught to agree make the features recognise the *video*, not the step.

Every random choice comes from a generator seeded by the sample key ``(index, seed)``
handed out by :class:`ophclip.train.data.LevelBatchSampler`, so a run's views are a pure
function of (seed, step) and survive a kill-and-resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from data_pipeline.frame_cache import FrameCache
from data_pipeline.manifests import manifest_path, read_manifest

from ..errors import DataError
from ..transforms import AugmentationCfg, FrameTransform, PreprocessCfg
from .config import ViewsSection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSpec:
    """Where a view lies in time: ``n`` frame times spread evenly over [start, start + span)."""

    start: float
    span: float
    n: int

    def times(self) -> np.ndarray:
        return self.start + (np.arange(self.n) + 0.5) * (self.span / self.n)


def draw_view(
    duration: float,
    n_frames: int,
    span_range: tuple[float, float],
    rng: np.random.Generator,
    offset: float = 0.0,
) -> ViewSpec:
    """A random view of ``n_frames`` frames inside [offset, offset + duration); its span is
    uniform in ``span_range`` (at most ``duration``)."""
    span = min(float(rng.uniform(*span_range)), duration)
    start = offset + float(rng.uniform(0.0, duration - span))
    return ViewSpec(start, span, n_frames)


def view_transforms(preprocess: PreprocessCfg, views: ViewsSection) -> tuple[FrameTransform, FrameTransform]:
    """(global, local) transforms: the model's own size and normalisation, different crop scales."""

    def make(scale: tuple[float, float]) -> FrameTransform:
        aug = AugmentationCfg(
            random_resized_crop_scale=tuple(scale),
            hflip_prob=views.hflip_prob,
            color_jitter=views.color_jitter,
            hue=views.hue,
        )
        return FrameTransform(preprocess, aug)

    return make(views.global_crop_scale), make(views.local_crop_scale)


class MultiCropVideoViews(Dataset):
    """Item: ``{"global": [(Tg, 3, S, S)] * G, "local": [(Tl, 3, S, S)] * L, "video_id", "specs"}``.

    Each video gives ``samples_per_video`` items (``video_ids[i // samples_per_video]``); they
    differ by their sample key, hence by window and views. :attr:`groups` labels each item
    with its video, for a sampler that keeps one video's items together in a batch.
    """

    def __init__(
        self,
        video_ids: Sequence[str],
        cache: FrameCache,
        views: ViewsSection,
        global_transform: FrameTransform,
        local_transform: FrameTransform,
        samples_per_video: int = 1,
    ):
        if samples_per_video < 1:
            raise ValueError(f"samples_per_video must be >= 1, got {samples_per_video}")
        self.video_ids = [str(v) for v in video_ids]
        self.samples_per_video = samples_per_video
        self.cache, self.views = cache, views
        self.global_transform, self.local_transform = global_transform, local_transform
        self._fps = {v: cache.fps(v) for v in self.video_ids}
        self._n = {v: cache.n_frames(v) for v in self.video_ids}

    def __len__(self) -> int:
        return len(self.video_ids) * self.samples_per_video

    @property
    def groups(self) -> list[int]:
        """The video index of each item."""
        return [i // self.samples_per_video for i in range(len(self))]

    def duration(self, video_id: str) -> float:
        return self._n[video_id] / self._fps[video_id]

    def specs(self, index: int, rng: np.random.Generator) -> tuple[list[ViewSpec], list[ViewSpec]]:
        v, duration = self.views, self.duration(self.video_ids[index // self.samples_per_video])
        offset = 0.0
        if v.window_s is not None and v.window_s < duration:
            offset = float(rng.uniform(0.0, duration - v.window_s))
            duration = v.window_s
        glob = [draw_view(duration, v.global_frames, v.global_span_s, rng, offset) for _ in range(v.global_views)]
        local = [draw_view(duration, v.local_frames, v.local_span_s, rng, offset) for _ in range(v.local_views)]
        return glob, local

    def _frames(self, video_id: str, spec: ViewSpec) -> np.ndarray:
        idx = np.clip(np.floor(spec.times() * self._fps[video_id]).astype(np.int64), 0, self._n[video_id] - 1)
        return np.ascontiguousarray(self.cache.frames(video_id)[idx])

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng(seed)
        video_id = self.video_ids[index // self.samples_per_video]
        glob, local = self.specs(index, rng)
        # Crops and colour draw from torch's global generator: fork it and seed it from the
        # sample key, so augmentation depends on the key only and the caller's stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = [self.global_transform(self._frames(video_id, s)) for s in glob]
            lo = [self.local_transform(self._frames(video_id, s)) for s in local]
        duration = self.duration(video_id)
        # Where each global view lies in its video (its centre over the duration, in [0, 1]):
        # the target of the optional progress pretext (loss.progress_weight).
        progress = torch.tensor([(s.start + s.span / 2) / duration for s in glob], dtype=torch.float32)
        return {"global": g, "local": lo, "video_id": video_id, "specs": glob + local, "progress": progress}


def collate_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack each view over the batch: ``global`` and ``local`` become lists of (B, T, 3, S, S),
    ``progress`` a (B, G) tensor."""
    out: dict[str, Any] = {
        "global": [torch.stack([it["global"][i] for it in items]) for i in range(len(items[0]["global"]))],
        "local": [torch.stack([it["local"][i] for it in items]) for i in range(len(items[0]["local"]))],
        "progress": torch.stack([it["progress"] for it in items]),
        "video_id": [it["video_id"] for it in items],
        "specs": [it["specs"] for it in items],
    }
    return out


def ssl_video_ids(
    root: str | Path, kinds: Sequence[str], exclude_splits: Sequence[str] = ("eval",)
) -> list[str]:
    """Videos of ``root`` of the given kinds (silent, narrated) with status ok and a frame-cache entry,
    except those whose optional ``split`` column is in ``exclude_splits``.

    Videos without a cache entry are skipped with a warning (a batch stage may have
    quarantined them); none left is an error that says what to do.
    """
    root = Path(root)
    videos = read_manifest(root, "videos")
    cache = FrameCache(root)
    status_ok = videos["status"].astype("string").fillna("").isin(["", "ok"])
    chosen = videos[status_ok & videos["kind"].astype(str).isin(list(kinds))]
    if "split" in chosen.columns and exclude_splits:
        held_out = chosen["split"].astype("string").fillna("").isin(list(exclude_splits)).to_numpy(dtype=bool)
        if held_out.any():
            logger.info(
                "holding out %d video(s) of split(s) %s", int(held_out.sum()), ", ".join(exclude_splits)
            )
        chosen = chosen[~held_out]
    ids = chosen["video_id"].astype(str).tolist()
    cached = [v for v in ids if v in cache]
    if len(cached) < len(ids):
        missing = sorted(set(ids) - set(cached))
        logger.warning(
            "%s: %d video(s) have no frame-cache entry and are skipped (first: %s); rerun the frames stage for them",
            manifest_path(root, "videos"),
            len(missing),
            ", ".join(missing[:5]),
        )
    if not cached:
        raise DataError(
            f"{manifest_path(root, 'videos')}: no usable video of kind {list(kinds)} with status ok and a frame-cache "
            f"entry in {cache.dir} outside splits {list(exclude_splits)}; run the pipeline's frames stage, or change "
            "data.kinds / data.exclude_splits"
        )
    return cached
