"""The demo's retrieval stage: pretraining with the memory bank on, then the bank, its gallery and agreement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ophclip.demo import DemoContext, pretrain_stage, retrieval_stage

TINY = ["train.steps=6", "train.clip_batch_size=4", "train.video_batch_size=2", "train.video_every=1",
        "train.warmup_steps=1", "train.save_every=100", "data.clip_frames=2", "data.video_frames=4",
        "retrieval.mode=feature_aug", "retrieval.k=2", "retrieval.warmup_steps=2", "retrieval.refresh_every=2",
        "log.tensorboard=false", "model.image_size=64"]  # the demo model, small frames: a test, not a result


@pytest.mark.slow  # about a minute: a 6-step pretraining run, two bank builds and galleries
def test_the_demo_trains_with_retrieval_and_reports_the_bank(synth_tiny_root, synth_tiny_dir, tmp_path):
    ctx = DemoContext(tmp_path / "demo", pretrain_overrides=TINY)
    ctx.out_dir.mkdir()
    ctx.synth_dir.symlink_to(synth_tiny_dir)
    ctx.root_dir.symlink_to(synth_tiny_root)
    pretrain_section = pretrain_stage(ctx)
    assert "retrieval.k=2" in pretrain_section, "the report must say how the demo config was overridden"
    log = [json.loads(line) for line in (ctx.out_dir / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert any("loss/video/retrieval" in r for r in log), "pretraining never used the bank"

    section = retrieval_stage(ctx)
    videos = pd.read_parquet(synth_tiny_root / "videos.parquet")
    n_silent = int((videos["kind"] == "silent").sum())
    label_of = dict(pd.read_csv(synth_tiny_dir / "surgery_types.csv").itertuples(index=False, name=None))
    for tag in ("random_init", "trained"):
        numbers = ctx.results["retrieval"][tag]
        assert numbers["bank"]["count"] == n_silent
        gallery = json.loads((ctx.out_dir / f"retrieval_gallery_{tag}.json").read_text())
        # Agreement recomputed from the neighbour lists and the generator's labels.
        pairs = [(label_of[q], n["video_id"]) for q, ns in gallery["neighbours"].items() for n in ns]
        assert pairs and all(n in set(videos.loc[videos["kind"] == "silent", "video_id"]) for _, n in pairs)
        expected = np.mean([label_of[n] == q for q, n in pairs])
        assert numbers["label_agreement"] == pytest.approx(expected)
        assert 0.0 < numbers["chance"] <= 1.0
        assert (ctx.out_dir / f"retrieval_gallery_{tag}.png").stat().st_size > 0
    assert "retrieval_gallery_trained.png" in section and "feature_aug" in section
