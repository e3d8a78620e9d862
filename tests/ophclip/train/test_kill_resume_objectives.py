"""SSL and distillation run in the one engine: SIGKILL mid-run, then `--resume latest`, ends bit-for-bit
where an uninterrupted run ends (the contrastive objective's own test is test_train_resume.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL_NAME, kill_after_first_checkpoint, offline_env

from ophclip.config import load_config, save_config
from ophclip.distill import DistillConfig
from ophclip.ssl import SSLConfig
from ophclip.train.logs import read_log

REPO = Path(__file__).resolve().parents[3]
STEPS = 12


def _ssl_config(root: Path, model_config: Path, out: Path):
    return load_config(SSLConfig, REPO / "configs" / "ssl_tiny.yaml", [
        f"data.root={root}", f"model.name={TINY_MODEL_NAME}", f"model.config_file={model_config}",
        f"train.output_dir={out}", "train.batch_size=8", f"train.steps={STEPS}", "train.warmup_steps=2",
        "train.save_every=2", "head.hidden_dim=32", "head.bottleneck_dim=16", "head.out_dim=32",
        "data.views.local_views=1", "data.views.global_frames=2", "data.views.local_frames=1",
        "data.views.global_span_s=[2.0,4.0]", "data.views.local_span_s=[0.5,1.0]", "log.tensorboard=false",
        "log.every=1", "train.device=cpu",
    ])


def _distill_config(root: Path, model_config: Path, out: Path):
    # The teacher is a saved folder, so the subprocess needs no registration of the test architecture.
    teacher = out.parent / "teacher"
    if not teacher.is_dir():
        import ophclip

        ophclip.add_model_config(model_config)
        ophclip.create_model(TINY_MODEL_NAME).save_pretrained(teacher)
    return load_config(DistillConfig, None, [
        f"data.root={root}", f"teacher.name={teacher}", "student.name=OphCLIP-student-ViT-Micro",
        "student.image_size=32", "data.clip_frames=2", "data.holdout_fraction=0", f"train.steps={STEPS}",
        "train.batch_size=4", "train.warmup_steps=2", "train.save_every=2", "train.log_every=1",
        f"train.output_dir={out}", "train.device=cpu",
    ])


OBJECTIVES = {"ssl": (_ssl_config, ("student", "teacher")), "distill": (_distill_config, ("student",))}


def _command(verb: str, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from ophclip.cli import main; main()", verb, str(config), "--no-progress", *extra]



@pytest.mark.slow  # four CLI processes per objective, about 40 s on 2 shared cores
@pytest.mark.parametrize("verb", sorted(OBJECTIVES))
def test_sigkill_then_resume_latest_equals_an_uninterrupted_run(verb, dataset_root, tiny_model_config, tmp_path):
    make, parts = OBJECTIVES[verb]
    paths = {}
    for name in ("straight", "killed"):
        path = tmp_path / f"{name}.yaml"
        save_config(make(dataset_root, tiny_model_config, tmp_path / name), path)
        paths[name] = path
    killed_out, straight_out = tmp_path / "killed", tmp_path / "straight"

    killed_at = kill_after_first_checkpoint(_command(verb, paths["killed"]), killed_out)
    latest = killed_out / "checkpoints" / "latest.pt"
    assert 0 < killed_at < STEPS

    resumed = subprocess.run(_command(verb, paths["killed"], "--resume", "latest"), env=offline_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {latest} at step {killed_at}" in resumed.stderr
    done = subprocess.run(_command(verb, paths["straight"]), env=offline_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    a = torch.load(straight_out / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(latest, weights_only=True)
    assert a["step"] == b["step"] == STEPS
    for part in parts:
        assert a[part].keys() == b[part].keys()
        differ = [k for k in a[part] if not torch.equal(a[part][k], b[part][k])]
        assert not differ, f"{part}: {differ[:5]} differ after resume"
    # The log reads as one run with the same losses, step for step.
    log_a, log_b = read_log(straight_out / "log.jsonl"), read_log(killed_out / "log.jsonl")
    assert [r["step"] for r in log_b] == [r["step"] for r in log_a] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
