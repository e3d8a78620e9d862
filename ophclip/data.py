"""Training samples read from a dataset root's manifests and frame cache.

Two levels (DESIGN.md, OphCLIP's hierarchy):

* :class:`ClipDataset`: one clip-text pair of ``clips.parquet``; a window of 3-5 s is
  drawn inside the clip and ``clip_frames`` frames (4 or 8) are sampled from it.
* :class:`VideoDataset`: one video; ``video_frames`` (16-64) frames spread over the whole
  video, with its title-summary text and the sentences of its narration. With
  ``texts=None`` it serves silent videos (for the memory bank).

Every random choice of a sample (window, frame jitter, augmentation, narration subset) is
drawn from a generator seeded by the *sample key* ``(index, seed)`` that the
:class:`LevelBatchSampler` hands out. The sampler's output is a pure function of
``(seed, level, epoch, position)``, so data order and augmentation are identical across
world sizes, loader workers and a kill-and-resume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from data_pipeline.frame_cache import FrameCache
from data_pipeline.manifests import NARRATED, SILENT, manifest_path, read_manifest

from .errors import DataError
from .transforms import AugmentationCfg

logger = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], torch.Tensor]
SampleKey = tuple[int, int]  # (dataset index, sample seed)

LEVELS = ("clip", "video")


@dataclass
class DataSection:
    """The ``data:`` section of a pretrain config: what a training sample is made of."""

    root: str = ""  # dataset root written by the pipeline (videos/clips/video_texts parquet + frames/)
    clip_frames: int = 4
    # A window of this many seconds (uniform in [min, max]) is drawn inside each clip.
    clip_window_s: tuple[float, float] = (3.0, 5.0)
    video_frames: int = 16
    clip_text: Literal["text", "narration"] = "text"
    video_text: Literal["summary_text", "title"] = "summary_text"
    # Video level: how many of a video's narration sentences are averaged into its
    # "mean narration" target (a random subset per sample when there are more).
    max_narrations_per_video: int = 8
    # Clip level: batches are made of runs of this many clips of one video (1: uniform
    # shuffle), so other steps of the same surgery are among each narration's negatives.
    clips_per_video: int = 1
    augment: bool = True  # false: train on preprocess_eval (no augmentation at all)
    augmentation: AugmentationCfg = field(default_factory=AugmentationCfg)
    num_workers: int = 0
    # Videos whose videos.parquet `split` (when the column exists) is listed here are held
    # out of training at both levels, e.g. the synthetic dataset's evaluation videos.
    exclude_splits: list[str] = field(default_factory=lambda: ["eval"])


def sample_seed(seed: int, level: str, epoch: int, position: int) -> int:
    """A 63-bit seed for the sample at ``position`` of ``epoch``'s order of ``level``."""
    state = np.random.SeedSequence([seed, LEVELS.index(level), epoch, position]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class LevelBatchSampler:
    """Endless, resumable batches of sample keys for one rank.

    Each epoch is a permutation of the dataset seeded by ``(seed, level, epoch)``; batch
    ``b`` of the epoch is the global batch ``perm[b*G:(b+1)*G]`` and this rank takes the
    contiguous slice ``rank*G/W : (rank+1)*G/W``. The tail that does not fill a global
    batch is dropped. Iteration starts at ``start_batch`` (batches already consumed), which
    is the whole of the sampler's state.

    ``groups`` (one label per item, e.g. its video) with ``group_size`` > 1 keeps items of a
    group together: each group's shuffled items are cut into runs of ``group_size`` and the
    runs are shuffled, so a batch holds several clips of each of a few videos. Their
    narrations are then the batch's hard negatives: other steps of the *same* surgery, which
    the anatomy of the video cannot tell apart (with uniform sampling nearly every negative
    comes from another video, and the tower can win by recognising the video).
    """

    def __init__(
        self,
        n_items: int,
        global_batch: int,
        *,
        seed: int,
        level: str,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
        groups: Sequence[Any] | None = None,
        group_size: int = 1,
    ):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not divide by world size {world_size}")
        if n_items < global_batch:
            raise DataError(
                f"the {level} level has {n_items} samples, fewer than one global batch of {global_batch}; "
                f"lower train.{level}_batch_size or add data"
            )
        self.n_items, self.global_batch = n_items, global_batch
        self.seed, self.level, self.shuffle = seed, level, shuffle
        self.rank, self.world_size = rank, world_size
        self.start_batch = start_batch
        self.batches_per_epoch = n_items // global_batch
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if groups is not None and len(groups) != n_items:
            raise ValueError(f"{len(groups)} group labels for {n_items} items")
        self.group_size = group_size
        self._group_members: list[np.ndarray] = []
        if groups is not None and group_size > 1:
            members: dict[Any, list[int]] = {}
            for i, label in enumerate(groups):
                members.setdefault(label, []).append(i)
            self._group_members = [np.asarray(ix) for ix in members.values()]  # first-appearance order: deterministic

    def position(self, batches_consumed: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) after ``batches_consumed`` batches."""
        return divmod(batches_consumed, self.batches_per_epoch)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_items)
        rng = np.random.default_rng([self.seed, LEVELS.index(self.level), epoch])
        if not self._group_members:
            return rng.permutation(self.n_items)
        runs = [run for members in self._group_members
                for run in np.array_split(rng.permutation(members), -(-len(members) // self.group_size))]
        return np.concatenate([runs[i] for i in rng.permutation(len(runs))])

    def global_batch_keys(self, batch_number: int) -> list[SampleKey]:
        epoch, b = self.position(batch_number)
        perm = self.order(epoch)
        lo = b * self.global_batch
        return [(int(perm[lo + j]), sample_seed(self.seed, self.level, epoch, lo + j)) for j in range(self.global_batch)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        local = self.global_batch // self.world_size
        k = self.start_batch
        while True:
            keys = self.global_batch_keys(k)
            yield keys[self.rank * local : (self.rank + 1) * local]
            k += 1


def _segment_times(lo: float, hi: float, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """``n`` times in [lo, hi): one per equal segment, random inside it (train) or its centre (eval)."""
    edges = np.linspace(lo, hi, n + 1)
    offsets = rng.random(n) if rng is not None else np.full(n, 0.5)
    return edges[:-1] + offsets * np.diff(edges)


class _VideoTiming:
    """fps and frame count per video, read from the cache index once (pandas lookups are slow per sample)."""

    def __init__(self, cache: FrameCache, video_ids: Sequence[str]):
        rows = cache.index.loc[sorted(set(video_ids))] if len(video_ids) else cache.index.iloc[:0]
        self.fps = dict(zip(rows["video_id"].astype(str), rows["fps"].astype(float), strict=True))
        self.n_frames = dict(zip(rows["video_id"].astype(str), rows["n_frames"].astype(int), strict=True))

    def duration(self, video_id: str) -> float:
        return self.n_frames[video_id] / self.fps[video_id]


def _frames_at(cache: FrameCache, timing: _VideoTiming, video_id: str, times: np.ndarray) -> np.ndarray:
    """Frames shown at ``times`` (seconds): frame floor(t * fps), clipped into the video."""
    idx = np.clip(np.floor(times * timing.fps[video_id]).astype(np.int64), 0, timing.n_frames[video_id] - 1)
    return np.ascontiguousarray(cache.frames(video_id)[idx])


def _to_tensor(frames: np.ndarray, transform: Transform | None, seed: int) -> torch.Tensor:
    if transform is None:
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # uint8 (T, 3, H, W)
    # Augmentations draw from torch's global generator; fork it so a sample's augmentation
    # depends on its key only, and the caller's generator (model init, dropout) is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(frames)


class ClipDataset(Dataset):
    """Clip-text pairs. Item: ``{"frames": (T, 3, S, S), "text", "clip_id", "video_id"}``."""

    def __init__(
        self,
        clips: pd.DataFrame,
        cache: FrameCache,
        *,
        n_frames: int = 4,
        window_s: tuple[float, float] = (3.0, 5.0),
        text_column: str = "text",
        transform: Transform | None = None,
        train: bool = True,
    ):
        self.clips = clips.reset_index(drop=True)
        self.cache = cache
        self.n_frames, self.window_s, self.transform, self.train = n_frames, window_s, transform, train
        self.text_column = text_column
        self.texts = self.clips[text_column].astype(str).tolist()
        self._start = self.clips["start"].to_numpy(dtype=float)
        self._end = self.clips["end"].to_numpy(dtype=float)
        self._video_ids = self.clips["video_id"].astype(str).tolist()
        self._clip_ids = self.clips["clip_id"].astype(str).tolist()
        self._timing = _VideoTiming(cache, self._video_ids)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def video_ids(self) -> list[str]:
        """The video of each clip, by dataset index."""
        return self._video_ids

    def window(self, index: int, rng: np.random.Generator | None) -> tuple[float, float]:
        """The [start, end) seconds sampled inside clip ``index`` (the whole clip if it is shorter)."""
        start, end = self._start[index], self._end[index]
        lo, hi = self.window_s
        length = rng.uniform(lo, hi) if rng is not None else (lo + hi) / 2
        length = min(length, end - start)
        slack = (end - start) - length
        offset = rng.uniform(0, slack) if rng is not None else slack / 2
        return start + offset, start + offset + length

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng(seed) if self.train else None
        lo, hi = self.window(index, rng)
        video_id = self._video_ids[index]
        frames = _frames_at(self.cache, self._timing, video_id, _segment_times(lo, hi, self.n_frames, rng))
        return {
            "frames": _to_tensor(frames, self.transform, seed),
            "text": self.texts[index],
            "clip_id": self._clip_ids[index],
            "video_id": video_id,
        }


class VideoDataset(Dataset):
    """Whole videos. Item: ``{"frames": (T, 3, S, S), "video_id", "text", "narrations"}``.

    ``texts`` (title summaries) and ``narrations`` (sentences per video) are None for silent
    videos; the item then carries ``text=None`` and ``narrations=[]``.
    """

    def __init__(
        self,
        video_ids: Sequence[str],
        cache: FrameCache,
        *,
        n_frames: int = 16,
        texts: Sequence[str] | None = None,
        narrations: Sequence[Sequence[str]] | None = None,
        max_narrations: int = 8,
        transform: Transform | None = None,
        train: bool = True,
    ):
        self.video_ids = [str(v) for v in video_ids]
        self.cache = cache
        self.texts = list(texts) if texts is not None else None
        self.narrations = [list(n) for n in narrations] if narrations is not None else None
        self.n_frames, self.max_narrations, self.transform, self.train = n_frames, max_narrations, transform, train
        self._timing = _VideoTiming(cache, self.video_ids)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng(seed) if self.train else None
        video_id = self.video_ids[index]
        duration = self._timing.duration(video_id)
        frames = _frames_at(self.cache, self._timing, video_id, _segment_times(0.0, duration, self.n_frames, rng))
        narrations: list[str] = []
        if self.narrations is not None:
            narrations = self.narrations[index]
            if len(narrations) > self.max_narrations:
                if rng is not None:
                    pick = np.sort(rng.choice(len(narrations), self.max_narrations, replace=False))
                else:
                    pick = np.linspace(0, len(narrations) - 1, self.max_narrations).round().astype(int)
                narrations = [narrations[i] for i in pick]
        return {
            "frames": _to_tensor(frames, self.transform, seed),
            "video_id": video_id,
            "text": self.texts[index] if self.texts is not None else None,
            "narrations": narrations,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack frames into (B, T, 3, S, S); keep every other field as a list."""
    out: dict[str, Any] = {"frames": torch.stack([it["frames"] for it in items])}
    for key in items[0]:
        if key != "frames":
            out[key] = [it[key] for it in items]
    return out


@dataclass
class Levels:
    """The datasets of one dataset root, plus what was dropped on the way (for run.json)."""

    clip: ClipDataset
    video: VideoDataset
    counts: dict[str, int] = field(default_factory=dict)


def _usable_text(series: pd.Series) -> pd.Series:
    return series.notna() & (series.astype("string").fillna("").str.strip() != "")


def _check_cached(df: pd.DataFrame, cache: FrameCache, table_path: Path) -> None:
    missing = ~df["video_id"].astype(str).map(lambda v: v in cache).to_numpy(dtype=bool)
    if missing.any():
        rows = np.flatnonzero(missing)
        first = df.iloc[rows[0]]
        ids = sorted(set(df["video_id"].astype(str)[missing]))
        raise DataError(
            f"{table_path}: {len(rows)} row(s) refer to video(s) with no frame-cache entry in "
            f"{cache.dir / 'index.parquet'} (first: row {rows[0]}, video_id {first['video_id']!r}; "
            f"missing videos: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}); "
            f"rerun the pipeline's frames stage for them, or drop them from the manifest"
        )
    for video_id in sorted(set(df["video_id"].astype(str))):
        file = cache.dir / str(cache.index.loc[video_id, "file"])
        if not file.is_file():
            raise DataError(
                f"{table_path}: video {video_id!r} is listed in {cache.dir / 'index.parquet'} but its frame file "
                f"{file} is missing; rerun the pipeline's frames stage"
            )


def load_levels(
    root: str | Path, data: DataSection, transform: Transform | None = None, train: bool = True
) -> Levels:
    """Read ``root``'s manifests and frame cache into the clip and video datasets.

    Rows with empty text or a non-positive duration are dropped with a warning and counted;
    a row whose video has no frame-cache entry is an error (the cache is incomplete).
    """
    root = Path(root)
    cache = FrameCache(root)
    counts: dict[str, int] = {}

    videos = read_manifest(root, "videos")
    held_out = _held_out(videos, data.exclude_splits)
    counts["held_out_videos"] = len(held_out)
    if held_out:
        logger.info("holding out %d video(s) of split(s) %s", len(held_out), ", ".join(data.exclude_splits))
        videos = videos[~videos["video_id"].astype(str).isin(held_out)]

    clips = read_manifest(root, "clips")
    clips = clips[~clips["video_id"].astype(str).isin(held_out)]
    ok = _usable_text(clips[data.clip_text]) & (clips["end"] > clips["start"])
    counts["clips_dropped"] = int((~ok).sum())
    if counts["clips_dropped"]:
        logger.warning(
            "%s: dropped %d clip(s) with empty %r or end <= start",
            manifest_path(root, "clips"), counts["clips_dropped"], data.clip_text,
        )
    clips = clips[ok].reset_index(drop=True)
    _check_cached(clips, cache, manifest_path(root, "clips"))
    counts["clips"] = len(clips)

    status_ok = videos["status"].astype("string").fillna("").isin(["", "ok"])
    narrated = videos[status_ok & (videos["kind"].astype(str) == NARRATED)]
    texts = read_manifest(root, "video_texts", required=False)
    texts = texts[texts["video_id"].astype(str).isin(set(narrated["video_id"].astype(str)))]
    has_text = _usable_text(texts[data.video_text])
    counts["video_texts_dropped"] = int((~has_text).sum())
    if counts["video_texts_dropped"]:
        logger.warning(
            "%s: dropped %d video(s) with empty %r",
            manifest_path(root, "video_texts"), counts["video_texts_dropped"], data.video_text,
        )
    texts = texts[has_text].drop_duplicates("video_id").reset_index(drop=True)
    _check_cached(texts, cache, manifest_path(root, "video_texts"))
    by_video = clips.groupby(clips["video_id"].astype(str), sort=False)[data.clip_text].agg(list).to_dict()
    # The video <-> mean-narration target needs at least one narration sentence per video.
    narrated_ok = texts["video_id"].astype(str).isin(set(by_video)).to_numpy(dtype=bool)
    counts["videos_without_clips_dropped"] = int((~narrated_ok).sum())
    if counts["videos_without_clips_dropped"]:
        logger.warning(
            "%s: dropped %d video(s) that have a summary but no clips in clips.parquet",
            manifest_path(root, "video_texts"), counts["videos_without_clips_dropped"],
        )
    texts = texts[narrated_ok].reset_index(drop=True)
    video_ids = texts["video_id"].astype(str).tolist()
    counts["videos"] = len(video_ids)
    counts["silent_videos"] = int((status_ok & (videos["kind"].astype(str) == SILENT)).sum())

    clip_ds = ClipDataset(
        clips, cache, n_frames=data.clip_frames, window_s=tuple(data.clip_window_s),
        text_column=data.clip_text, transform=transform, train=train,
    )
    video_ds = VideoDataset(
        video_ids, cache, n_frames=data.video_frames, texts=texts[data.video_text].astype(str).tolist(),
        narrations=[by_video.get(v, []) for v in video_ids], max_narrations=data.max_narrations_per_video,
        transform=transform, train=train,
    )
    return Levels(clip=clip_ds, video=video_ds, counts=counts)


def _held_out(videos: pd.DataFrame, exclude_splits: Sequence[str]) -> set[str]:
    if "split" not in videos.columns or not exclude_splits:
        return set()
    split = videos["split"].astype("string").fillna("")
    return set(videos.loc[split.isin(list(exclude_splits)).to_numpy(dtype=bool), "video_id"].astype(str))


def silent_videos(
    root: str | Path, n_frames: int, transform: Transform | None = None, exclude_splits: Sequence[str] = ("eval",)
) -> VideoDataset:
    """The silent videos of ``root`` (no narration) for the memory bank, evaluated without augmentation.

    Videos of ``exclude_splits`` (by videos.parquet's optional ``split`` column) are left out.
    """
    root = Path(root)
    cache = FrameCache(root)
    videos = read_manifest(root, "videos")
    videos = videos[~videos["video_id"].astype(str).isin(_held_out(videos, exclude_splits))]
    status_ok = videos["status"].astype("string").fillna("").isin(["", "ok"])
    silent = videos[status_ok & (videos["kind"].astype(str) == SILENT)].reset_index(drop=True)
    _check_cached(silent, cache, manifest_path(root, "videos"))
    return VideoDataset(silent["video_id"].astype(str).tolist(), cache, n_frames=n_frames, transform=transform, train=False)
