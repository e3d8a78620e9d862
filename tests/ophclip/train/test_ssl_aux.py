"""The auxiliary self-supervised loss on silent-pool clips inside OphCLIP pretraining (``ssl_aux``)."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_overrides

from ophclip.config import load_config
from ophclip.train import PretrainConfig, Trainer

AUX = ["ssl_aux.weight=0.5", "ssl_aux.batch_size=2", "ssl_aux.head.hidden_dim=32", "ssl_aux.head.out_dim=64",
       "ssl_aux.views.global_span_s=[0.5,1.5]", "ssl_aux.views.local_span_s=[0.25,0.5]"]


def _cfg(root: Path, model_config: Path, out: Path, *extra: str) -> PretrainConfig:
    overrides = tiny_overrides(root, model_config, out, **{"train.video_every": 0, "train.save_every": 100})
    return load_config(PretrainConfig, None, [*overrides, *extra])


def _vision_grad(trainer: Trainer) -> dict[str, torch.Tensor]:
    trainer.forward_backward("clip", trainer.next_batch("clip"))
    return {n: p.grad.clone() for n, p in trainer.model.visual.named_parameters() if p.grad is not None}


def test_the_auxiliary_loss_reaches_the_vision_tower_and_only_ema_moves_the_teacher(dataset_root, tiny_model_config, tmp_path):
    plain = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "plain"))
    aux = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "aux", *AUX))
    assert plain.ssl_aux is None and aux.ssl_aux is not None
    g_plain, g_aux = _vision_grad(plain), _vision_grad(aux)
    # Same seed, same clip batch: any difference in the tower's gradient comes from the auxiliary term.
    assert any(not torch.allclose(g_plain[n], g_aux[n]) for n in g_plain)
    teacher = aux.ssl_aux.aux.teacher
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    aux.optimizer.zero_grad(set_to_none=True)

    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    aux.fit(progress=False)
    losses = [r["loss/clip/ssl_aux"] for r in aux.history if "loss/clip/ssl_aux" in r]
    assert len(losses) == aux.cfg.train.steps and all(torch.isfinite(torch.tensor(losses)))
    assert all(p.grad is None for p in teacher.parameters())
    moved = [n for n, p in teacher.named_parameters() if not torch.equal(p, before[n])]
    assert moved, "the EMA teacher never moved"
    # EMA: the teacher lies between where it started and where the student is now.
    student = dict(aux.model.visual.named_parameters())
    name = next(n for n in moved if n.startswith("backbone."))
    t, s0, s1 = dict(teacher.named_parameters())[name], before[name], student[name[len("backbone."):]]
    assert (t - s0).norm() < (s1 - s0).norm()


def test_resume_with_the_auxiliary_loss_is_exact(dataset_root, tiny_model_config, tmp_path):
    straight = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "straight", *AUX))
    straight.fit(progress=False)
    first = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "resumed", *AUX))
    for _ in range(3):
        first.train_step()
    first.save()
    resumed = Trainer(_cfg(dataset_root, tiny_model_config, tmp_path / "resumed", *AUX), resume="latest")
    resumed.fit(progress=False)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    a, b = straight.ssl_aux.state_dict(), resumed.ssl_aux.state_dict()
    for part in ("module", "teacher"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name}"
