"""Clip and video samples from the frame cache, and the resumable rank-sharded batch sampler."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import PHASES, SURGERIES

from data_pipeline.manifests import read_manifest, write_manifest
from ophclip.data import DataSection, LevelBatchSampler, collate, load_levels, silent_videos
from ophclip.errors import DataError


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_each_epoch_visits_every_full_batch_once_and_ranks_split_the_global_batch():
    n, batch = 23, 4
    single = LevelBatchSampler(n, batch, seed=3, level="clip")
    batches = _take(single, 2 * single.batches_per_epoch)
    for epoch in range(2):
        seen = [i for b in batches[epoch * 5 : (epoch + 1) * 5] for i, _ in b]
        assert len(seen) == len(set(seen)) == 20  # 23 // 4 full batches, no repeats
    assert [i for i, _ in batches[0]] != [i for i, _ in batches[5]]  # reshuffled per epoch
    ranks = [_take(LevelBatchSampler(n, batch, seed=3, level="clip", rank=r, world_size=2), 7) for r in range(2)]
    for k in range(7):
        assert ranks[0][k] + ranks[1][k] == batches[k]  # same keys, same per-sample seeds


def test_restarting_at_a_position_continues_the_same_sequence():
    full = _take(LevelBatchSampler(30, 6, seed=1, level="video"), 12)
    resumed = _take(LevelBatchSampler(30, 6, seed=1, level="video", start_batch=7), 5)
    assert resumed == full[7:]
    assert LevelBatchSampler(30, 6, seed=1, level="video").position(7) == (1, 2)


def test_levels_and_seeds_give_different_orders():
    a = _take(LevelBatchSampler(40, 8, seed=0, level="clip"), 1)[0]
    b = _take(LevelBatchSampler(40, 8, seed=0, level="video"), 1)[0]
    c = _take(LevelBatchSampler(40, 8, seed=1, level="clip"), 1)[0]
    assert a != b and a != c


def test_grouped_batches_keep_runs_of_one_video_and_still_visit_every_item_once():
    videos = [f"v{i % 7}" for i in range(61)]  # 7 videos of 8-9 clips, interleaved by index
    sampler = LevelBatchSampler(61, 12, seed=2, level="clip", groups=videos, group_size=4)
    order = sampler.order(0)
    assert sorted(order.tolist()) == list(range(61))  # a permutation: nothing dropped or repeated
    # Cut at video changes, the order is runs of at most 4 clips of one video, and most are full.
    runs, start = [], 0
    for k in range(1, 62):
        if k == 61 or videos[order[k]] != videos[order[k - 1]]:
            runs.append(k - start)
            start = k
    assert sum(runs) == 61 and np.mean(runs) > 3.0
    uniform = LevelBatchSampler(61, 12, seed=2, level="clip").order(0)
    same_video = {name: sum(videos[o[k]] == videos[o[k + 1]] for k in range(60)) for name, o in
                  (("grouped", order), ("uniform", uniform))}
    assert same_video["grouped"] > 2 * same_video["uniform"], same_video
    # Deterministic per (seed, epoch) and resumable like the plain sampler.
    again = LevelBatchSampler(61, 12, seed=2, level="clip", groups=videos, group_size=4, start_batch=6)
    assert _take(again, 3) == _take(sampler, 9)[6:]
    assert not np.array_equal(sampler.order(1), order)
    with pytest.raises(ValueError, match="group labels"):
        LevelBatchSampler(61, 12, seed=2, level="clip", groups=videos[:5], group_size=4)


def test_fewer_samples_than_a_global_batch_is_a_clear_error():
    with pytest.raises(DataError, match="clip_batch_size"):
        LevelBatchSampler(3, 8, seed=0, level="clip")


def _nearest_phase(mean_rgb: np.ndarray, video_id: str) -> str:
    """The phase whose colour (the builder's ground truth) is closest to a frame's mean colour."""
    tint = SURGERIES[int(video_id[3:]) % len(SURGERIES)][1]
    dist = {name: np.abs(mean_rgb - np.clip(np.array(colour) + tint, 0, 255)).max() for name, colour in PHASES}
    return min(dist, key=dist.get)


def test_clip_frames_come_from_a_window_inside_the_clip(dataset_root):
    levels = load_levels(dataset_root, DataSection(root=str(dataset_root), clip_frames=4, clip_window_s=(3.0, 5.0)))
    ds = levels.clip
    assert len(ds) == 32 and levels.counts["clips"] == 32
    for index in range(len(ds)):
        for seed in (0, 1, 2):
            rng = np.random.default_rng(seed)
            lo, hi = ds.window(index, rng)
            row = ds.clips.iloc[index]
            assert row["start"] - 1e-9 <= lo < hi <= row["end"] + 1e-9
            assert 3.0 - 1e-9 <= hi - lo <= 5.0 + 1e-9
            item = ds[(index, seed)]
            frames = item["frames"].numpy()  # uint8 (T, 3, H, W): no transform given
            assert frames.shape == (4, 3, 32, 32)
            # Every frame shows the narrated phase (by colour, the builder's ground truth).
            for mean in frames.reshape(4, 3, -1).mean(-1):
                assert item["text"].endswith(_nearest_phase(mean, item["video_id"]))
    # A sample is a pure function of its key.
    assert np.array_equal(ds[(5, 7)]["frames"], ds[(5, 7)]["frames"])


def test_video_frames_spread_over_the_whole_video(dataset_root):
    levels = load_levels(dataset_root, DataSection(root=str(dataset_root), video_frames=16, max_narrations_per_video=3))
    ds = levels.video
    assert len(ds) == 8 and levels.counts["silent_videos"] == 2
    item = ds[(0, 11)]
    frames = item["frames"].numpy()
    assert frames.shape == (16, 3, 32, 32)
    # 4 phases of equal length, 16 segment samples: 4 consecutive frames per phase, each phase once.
    phases = [_nearest_phase(f.reshape(3, -1).mean(-1), item["video_id"]) for f in frames]
    runs = [phases[i] for i in range(0, 16, 4)]
    assert all(phases[i] == runs[i // 4] for i in range(16))
    assert len(set(runs)) == 4
    assert len(item["narrations"]) == 3 and set(item["narrations"]) <= set(ds.narrations[0])
    assert item["text"].startswith(("cataract surgery", "vitrectomy"))
    batch = collate([ds[(i, i)] for i in range(3)])
    assert tuple(batch["frames"].shape) == (3, 16, 3, 32, 32) and len(batch["narrations"]) == 3
    silent = silent_videos(dataset_root, n_frames=8)
    assert len(silent) == 2 and silent[0]["text"] is None


def test_a_clip_whose_video_is_not_in_the_frame_cache_is_named(dataset_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    clips = read_manifest(root, "clips")
    clips.loc[3, "video_id"] = "ghost_video"
    write_manifest(root, "clips", clips)
    with pytest.raises(DataError, match=r"clips\.parquet.*row 3.*'ghost_video'.*frames stage"):
        load_levels(root, DataSection(root=str(root)))


def test_rows_with_empty_text_are_dropped_and_counted(dataset_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    clips = read_manifest(root, "clips")
    clips.loc[[0, 5], "text"] = ""
    write_manifest(root, "clips", clips)
    texts = read_manifest(root, "video_texts")
    texts.loc[1, "summary_text"] = "  "
    write_manifest(root, "video_texts", texts)
    levels = load_levels(root, DataSection(root=str(root)))
    assert levels.counts["clips_dropped"] == 2 and len(levels.clip) == 30
    assert levels.counts["video_texts_dropped"] == 1 and len(levels.video) == 7
    assert "" not in levels.clip.texts


def test_empty_clips_table_gives_an_empty_dataset(dataset_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    write_manifest(root, "clips", read_manifest(root, "clips").iloc[:0])
    levels = load_levels(root, DataSection(root=str(root)))
    assert len(levels.clip) == 0 and len(levels.video) == 0  # no video has a clip left to narrate it
    assert isinstance(levels.video.texts, list)
    pd.testing.assert_frame_equal(levels.clip.clips, levels.clip.clips.iloc[:0])


def test_videos_of_excluded_splits_are_held_out_of_both_levels_and_the_silent_pool(dataset_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset_root, root)
    videos = read_manifest(root, "videos")
    held = {"vid001", "vid005", "vid009"}  # two narrated, one silent
    videos["split"] = ["eval" if v in held else "pretrain" for v in videos["video_id"]]
    write_manifest(root, "videos", videos)
    levels = load_levels(root, DataSection(root=str(root)))
    assert levels.counts["held_out_videos"] == 3
    assert not held & set(levels.clip.clips["video_id"]) and len(levels.clip) == 32 - 2 * 4
    assert not held & set(levels.video.video_ids) and len(levels.video) == 6
    assert levels.counts["silent_videos"] == 1
    pool = silent_videos(root, n_frames=2)
    assert len(pool) == 1 and pool[0]["video_id"] == "vid008"
    everything = load_levels(root, DataSection(root=str(root), exclude_splits=[]))
    assert len(everything.clip) == 32 and len(everything.video) == 8
