"""The hierarchical level schedule and the cosine schedules of the engine."""

from __future__ import annotations

import math

import pytest
import torch

from ophclip.schedule import LevelSchedule, cosine_between, cosine_with_warmup


@pytest.mark.parametrize("every", [1, 2, 4])
def test_a_video_step_follows_every_n_clip_steps(every):
    schedule = LevelSchedule(every)
    levels = [schedule.level_at(s) for s in range(5 * (every + 1))]
    expected = (["clip"] * every + ["video"]) * 5
    assert levels == expected
    assert schedule.count("video", len(levels)) == 5


def test_zero_means_clip_level_only_and_clip_false_means_video_only():
    assert {LevelSchedule(0).level_at(s) for s in range(20)} == {"clip"}
    assert {LevelSchedule(3, clip=False).level_at(s) for s in range(20)} == {"video"}
    with pytest.raises(ValueError):
        LevelSchedule(-1)


def test_cosine_after_warmup_matches_torch_cosine_annealing():
    total, warmup, base, min_ratio = 50, 10, 0.1, 0.1
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=base * min_ratio)
    for step in range(warmup, total + 1):
        ours = base * cosine_with_warmup(step, total, warmup, min_ratio)
        assert ours == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        reference.step()


def test_warmup_is_linear_then_cosine_to_zero():
    total, warmup = 20, 4
    assert [cosine_with_warmup(s, total, warmup) for s in range(warmup)] == [0.25, 0.5, 0.75, 1.0]
    last = cosine_with_warmup(total - 1, total, warmup)
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup))))
    assert cosine_with_warmup(total + 5, total, warmup) == pytest.approx(0.0, abs=1e-12)


def test_cosine_between_runs_from_start_to_end_and_stays():
    # DINO's momentum and weight-decay schedules: start at step 0, the end value at the last step and after.
    assert cosine_between(0.996, 1.0, 0, 100) == pytest.approx(0.996)
    assert cosine_between(0.996, 1.0, 50, 100) == pytest.approx(0.998)
    assert cosine_between(0.04, 0.4, 100, 100) == pytest.approx(0.4)
    assert cosine_between(0.04, 0.4, 150, 100) == pytest.approx(0.4)
