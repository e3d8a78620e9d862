"""The hierarchical level schedule and the cosine-with-warmup learning rate."""

from __future__ import annotations

import math

import pytest
import torch

from ophclip.train.schedule import LevelSchedule, cosine_with_warmup, make_lr_scheduler


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


def test_warmup_is_linear_and_the_lambda_scheduler_follows_it():
    total, warmup = 20, 4
    assert [cosine_with_warmup(s, total, warmup) for s in range(warmup)] == [0.25, 0.5, 0.75, 1.0]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2.0)
    sched = make_lr_scheduler(opt, total, warmup, 0.0)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:warmup] == [0.5, 1.0, 1.5, 2.0]
    assert seen[-1] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup))))
    # The scheduler's state is just its step count, so a reloaded scheduler continues the curve.
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched2 = make_lr_scheduler(opt2, total, warmup, 0.0)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()
