"""Integration: pretrain OphCLIP-tiny-MiniLM on the dataset root built from the tiny synthetic dataset."""

from __future__ import annotations

import math

from ophclip.config import load_config
from ophclip.model import OphCLIP
from ophclip.train import PretrainConfig, Trainer


def test_pretraining_runs_on_the_synthetic_dataset_root(synth_tiny_root, tmp_path):
    cfg = load_config(
        PretrainConfig,
        None,
        [
            f"data.root={synth_tiny_root}",
            "model.name=OphCLIP-tiny-MiniLM",
            f"train.output_dir={tmp_path / 'run'}",
            "data.clip_frames=2",
            "data.video_frames=4",
            "train.clip_batch_size=4",
            "train.video_batch_size=2",
            "train.video_every=1",
            "train.steps=4",
            "train.save_every=4",
            "log.every=1",
            "log.tensorboard=false",
        ],
    )
    trainer = Trainer(cfg)
    counts = trainer.levels.counts
    assert counts["clips"] > 0 and counts["videos"] > 0 and counts["silent_videos"] > 0
    summary = trainer.fit(progress=False)
    assert summary["steps"] == 4
    for key in ("loss/clip", "loss/video"):
        assert math.isfinite(summary["last_loss"][key])
    model = OphCLIP.from_pretrained(tmp_path / "run" / "final")
    assert model.embed_dim == trainer.model.embed_dim
