"""The dataset root built from the synthetic ground truth follows the data contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from data_pipeline.frame_cache import FrameCache
from data_pipeline.manifests import SCHEMAS, read_manifest


def test_every_table_reads_with_the_contract_schema(synth_tiny_root):
    for table in SCHEMAS:
        df = read_manifest(synth_tiny_root, table)
        assert list(df.columns[: len(SCHEMAS[table])]) == list(SCHEMAS[table])
    assert len(read_manifest(synth_tiny_root, "quarantine")) == 0
    run = json.loads((synth_tiny_root / "run.json").read_text())
    assert run["counts"]["videos"] == len(read_manifest(synth_tiny_root, "videos"))


def test_videos_table_mirrors_metadata(synth_tiny_root, synth_tiny_dir):
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv", dtype={"video_id": str}, keep_default_na=False)
    videos = read_manifest(synth_tiny_root, "videos").set_index("video_id")
    assert set(videos.index) == set(meta["video_id"])
    for m in meta.itertuples():
        v = videos.loc[m.video_id]
        assert v["kind"] == m.kind and v["split"] == m.split and v["title"] == m.title
        assert bool(v["has_audio"]) == (m.kind == "narrated") and v["status"] == "ok"
        assert v["duration_s"] == m.duration_s


def test_segments_are_the_script(synth_tiny_root, synth_tiny_dir):
    script = pd.read_parquet(synth_tiny_dir / "script.parquet")
    seg = read_manifest(synth_tiny_root, "segments")
    assert len(seg) == len(script) and seg["seg_id"].is_unique
    assert (seg["source"] == "script").all()
    merged = seg.merge(script, on=["video_id", "start", "end"], suffixes=("", "_script"))
    assert len(merged) == len(script) and (merged["text"] == merged["text_script"]).all()


def test_clips_hold_only_relevant_narration_and_cover_it(synth_tiny_root, synth_tiny_dir):
    script = pd.read_parquet(synth_tiny_dir / "script.parquet")
    clips = read_manifest(synth_tiny_root, "clips")
    videos = read_manifest(synth_tiny_root, "videos").set_index("video_id")
    relevant = script[~script["is_chatter"]]
    chatter = set(script.loc[script["is_chatter"], "text"])
    assert clips["clip_id"].is_unique and (clips["rewrite_model"] == "none").all()
    assert (clips["text"] == clips["narration"]).all()
    covered = 0
    for c in clips.itertuples():
        assert not any(t in c.narration for t in chatter if t not in set(relevant["text"]))
        inside = relevant[(relevant["video_id"] == c.video_id) & (relevant["start"] >= c.start - 1e-9)
                          & (relevant["end"] <= c.end + 1e-9)]
        assert len(inside) >= 1 and all(t.rstrip(".") in c.narration for t in inside["text"])
        covered += len(inside)
        duration = videos.loc[c.video_id, "duration_s"]
        assert c.end - c.start >= min(4.0, duration) - 1e-6 or c.start == 0.0 or c.end == duration
    assert covered == len(relevant), "every non-chatter sentence lands in exactly one clip"


def test_video_texts_for_narrated_videos(synth_tiny_root, synth_tiny_dir):
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv", dtype={"video_id": str}, keep_default_na=False)
    texts = read_manifest(synth_tiny_root, "video_texts")
    assert set(texts["video_id"]) == set(meta.loc[meta["kind"] == "narrated", "video_id"])
    assert (texts["summarize_model"] == "ground-truth").all()
    for t in texts.itertuples():
        summary = json.loads(t.summary_json)
        m = meta.set_index("video_id").loc[t.video_id]
        assert summary["indication"] == m["indication"] and m["indication"] in t.summary_text


def test_frame_cache_matches_duration_and_size(synth_tiny_root):
    cache = FrameCache(synth_tiny_root)
    videos = read_manifest(synth_tiny_root, "videos")
    assert len(cache) == len(videos)
    for v in videos.itertuples():
        arr = cache.frames(v.video_id)
        assert arr.dtype == np.uint8 and arr.shape[-1] == 3 and min(arr.shape[1:3]) == 64
        assert cache.fps(v.video_id) == 4.0
        assert abs(len(arr) - v.duration_s * 4.0) <= 1
        assert arr.std() > 5, "frames are not blank"
