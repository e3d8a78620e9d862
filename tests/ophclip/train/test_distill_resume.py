"""Distillation runs in the one engine, so a stopped and resumed run retraces an uninterrupted one exactly."""

from __future__ import annotations

import json

import numpy as np
import torch
from conftest import TINY_MODEL_NAME

import ophclip
from ophclip.config import load_config
from ophclip.distill import DistillConfig
from ophclip.train.objectives.distill import DistillTrainer


def _config(root, out, *extra):
    return load_config(DistillConfig, None, [
        f"data.root={root}", f"teacher.name={TINY_MODEL_NAME}", "student.name=OphCLIP-student-ViT-Micro",
        "student.image_size=32", "data.clip_frames=2", "data.holdout_fraction=0", "train.steps=6",
        "train.batch_size=4", "train.warmup_steps=2", "train.log_every=1", f"train.output_dir={out}", *extra,
    ])


def test_stop_then_resume_latest_equals_an_uninterrupted_run(dataset_root, tiny_model_config, tmp_path):
    ophclip.add_model_config(tiny_model_config)
    full = DistillTrainer(_config(dataset_root, tmp_path / "full"))
    full.fit(progress=False)
    first = DistillTrainer(_config(dataset_root, tmp_path / "split", "train.save_every=100"))
    first.fit(progress=False, stop_at=3)  # as if killed after step 3: a checkpoint is written at the stop
    run = json.loads((tmp_path / "split" / "run.json").read_text())
    assert (run["status"], run["step"], run["objective"]) == ("stopped", 3, "distill")
    assert not (tmp_path / "split" / "student").exists()  # nothing final before the last step
    # The second half is a new process in spirit: new objects and a scrambled global RNG.
    torch.manual_seed(1234)
    np.random.seed(99)
    second = DistillTrainer(_config(dataset_root, tmp_path / "split"), resume="latest")
    assert second.step == 3
    second.fit(progress=False)
    assert second.losses == full.losses[3:]  # exactly the same floats, step for step
    a, b = full.student.state_dict(), second.student.state_dict()
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed
    # And the training did move the student: the comparison is not between two untouched copies.
    fresh = DistillTrainer(_config(dataset_root, tmp_path / "fresh"))
    assert any(not torch.equal(v, fresh.student.state_dict()[k]) for k, v in a.items())
    assert (tmp_path / "split" / "student" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "split" / "run.json").read_text())["status"] == "finished"
