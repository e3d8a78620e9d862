"""A run killed with SIGKILL and resumed with --resume latest ends with the weights of an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import kill_after_first_checkpoint, offline_env, tiny_overrides

from ophclip.config import load_config, save_config
from ophclip.train import PretrainConfig
from ophclip.train.logs import read_log

STEPS = 24


def _command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ophclip.train", str(config), "--no-progress", *extra]



def _config(dataset_root, tiny_model_config, out: Path, tmp_path: Path) -> Path:
    # Augmentation on, video steps, accumulation: every source of randomness and state is exercised.
    overrides = tiny_overrides(
        dataset_root, tiny_model_config, out,
        **{"train.steps": STEPS, "train.save_every": 2, "train.accum_freq": 2, "log.tensorboard": True},
    )
    cfg = load_config(PretrainConfig, None, overrides)
    path = tmp_path / f"{out.name}.yaml"
    save_config(cfg, path)
    return path


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_sigkill_then_resume_latest_equals_an_uninterrupted_run(dataset_root, tiny_model_config, tmp_path):
    straight_out, killed_out = tmp_path / "straight", tmp_path / "killed"
    straight = _config(dataset_root, tiny_model_config, straight_out, tmp_path)
    killed = _config(dataset_root, tiny_model_config, killed_out, tmp_path)

    killed_at = kill_after_first_checkpoint(_command(killed), killed_out)
    latest = killed_out / "checkpoints" / "latest.pt"
    assert 0 < killed_at < STEPS

    resumed = subprocess.run(_command(killed, "--resume", "latest"), env=offline_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {latest} at step {killed_at}" in resumed.stderr
    done = subprocess.run(_command(straight), env=offline_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    a, b = _weights(straight_out), _weights(killed_out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume (max diff {(a[name] - b[name]).abs().max()})"
    opt_a = torch.load(straight_out / "checkpoints" / "latest.pt", weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(killed_out / "checkpoints" / "latest.pt", weights_only=True)["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for key in opt_a:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_a[key][name], opt_b[key][name])
    # The log reads as one run: every step once, and the same losses as the uninterrupted run.
    log_a, log_b = read_log(straight_out / "log.jsonl"), read_log(killed_out / "log.jsonl")
    assert [r["step"] for r in log_b] == list(range(1, STEPS + 1))
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b]
    for ra, rb in zip(log_a, log_b, strict=True):
        for key in ra:
            if key.startswith("loss/"):
                assert ra[key] == rb[key], (ra["step"], key)
