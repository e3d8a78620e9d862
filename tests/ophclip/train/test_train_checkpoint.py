"""Atomic checkpoints loadable with weights_only, RNG round trips, and resolving --resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ophclip.errors import ModelError
from ophclip.train.checkpoint import (
    checkpoint_dir,
    copy_checkpoint,
    load_checkpoint,
    resolve_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draws()
    save_checkpoint(tmp_path / "c.pt", {"rng": [rng_state()]})
    expected = [_draws() for _ in range(3)]
    _draws()  # move every generator on
    state = load_checkpoint(tmp_path / "c.pt")  # torch.load(weights_only=True) inside
    set_rng_state(state["rng"][0])
    assert [_draws() for _ in range(3)] == expected


def test_save_is_atomic_and_a_stale_tmp_file_is_harmless(tmp_path):
    path = tmp_path / "checkpoints" / "latest.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    path.with_name("latest.pt.tmp").write_bytes(b"half a checkpoint from a killed run")
    save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["step"] == 2
    assert not path.with_name("latest.pt.tmp").exists()
    copy_checkpoint(path, tmp_path / "checkpoints" / "best.pt")
    assert torch.equal(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["w"], torch.zeros(3))


def test_foreign_and_truncated_files_are_clear_errors(tmp_path):
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not an ophclip training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "ok.pt", {"w": torch.ones(100)})
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.pt: not a readable ophclip checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_resolve_resume(tmp_path):
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("latest", tmp_path) is None  # nothing yet: a fresh start
    save_checkpoint(checkpoint_dir(tmp_path) / "latest.pt", {"step": 5})
    assert resolve_resume("latest", tmp_path) == checkpoint_dir(tmp_path) / "latest.pt"
    with pytest.raises(ModelError, match="best.pt not found"):
        resolve_resume("best", tmp_path)
    with pytest.raises(ModelError, match="nowhere.pt not found"):
        resolve_resume(tmp_path / "nowhere.pt", tmp_path)
