"""Two real gloo processes on the CPU must reproduce a single-process run over the same global batch.

The test runs this file as a script, which forks the ranks with
``torch.multiprocessing.start_processes`` (a fresh process, not the pytest one, is forked). Each rank takes its slice of a
global batch drawn from a fixed seed, computes the losses with gathering, and saves
loss values and gradients; the test recomputes everything in one process and compares.

Conventions checked (open_clip's):
* ``gather_with_grad=True``: the gradient on a rank's local features is ``world_size``
  times the single-process gradient (all_gather's backward sums over ranks), and DDP's
  averaging of parameter gradients then gives exactly the single-process gradient,
  which the DDP part of the test checks on a real ``DistributedDataParallel`` layer.
* ``local_loss=True``: per-rank losses average to the global loss; otherwise every rank
  sees the global loss.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

WORLD = 2
PER_RANK = 4
DIM = 8
K = 3
SCALE = 11.0
FLAG_CASES = [
    {"local_loss": False, "gather_with_grad": True},
    {"local_loss": True, "gather_with_grad": True},
    {"local_loss": True, "gather_with_grad": True, "text_target_temperature": 0.2},  # soft clip-level targets
    {"local_loss": False, "gather_with_grad": True, "frame_text_weight": 0.5},  # per-frame term
    {"local_loss": True, "gather_with_grad": True, "frame_text_weight": 0.5, "text_target_temperature": 0.2},
]


def global_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    n = WORLD * PER_RANK

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)

    scores = torch.rand(n, K, generator=g, dtype=torch.float64)
    scores[1, 1:] = float("-inf")
    scores[6, :] = float("-inf")
    return {
        "clip": unit(n, DIM),
        "frames": unit(n, 3, DIM),
        "text": unit(n, DIM),
        "text_ids": torch.tensor([0, 1, 0, 2, 3, 1, 4, 0]),
        "video": unit(n, DIM),
        "title": unit(n, DIM),
        "narration": unit(n, DIM),
        "neighbours": unit(n, K, DIM),
        "scores": scores,
        "inputs": torch.randn(n, 5, generator=g, dtype=torch.float64),
        "weight": torch.randn(DIM, 5, generator=g, dtype=torch.float64),
    }


def losses_and_grads(
    batch: dict[str, torch.Tensor], flags: dict, rank: int, world_size: int
) -> dict[str, torch.Tensor]:
    """Loss values and gradients w.r.t. the (local) feature tensors for every loss path."""
    from ophclip.loss import HierarchicalLoss, LossCfg
    from ophclip.memory import RetrievalCfg

    out = {}
    for mode in ("soft_positive", "feature_aug"):
        cfg = LossCfg(repeated_text="ignore", **flags)
        loss_fn = HierarchicalLoss(cfg, rank=rank, world_size=world_size,
                                   retrieval=RetrievalCfg(mode=mode, temperature=0.2))
        leaves = {
            k: batch[k].clone().requires_grad_()
            for k in ("clip", "frames", "text", "video", "title", "narration", "neighbours")
        }
        clip = loss_fn.clip_loss(
            leaves["clip"], leaves["text"], torch.tensor(SCALE), text_ids=batch["text_ids"],
            frame_features=leaves["frames"],
        )
        video = loss_fn.video_loss(
            leaves["video"],
            leaves["title"],
            torch.tensor(SCALE),
            narration_features=leaves["narration"],
            neighbour_features=leaves["neighbours"],
            neighbour_scores=batch["scores"],
        )
        (clip["total"] + video["total"]).backward()
        for name, value in {
            **clip,
            **{f"video_{k}" if not k.startswith("video") else k: v for k, v in video.items()},
        }.items():
            out[f"{mode}/loss/{name}"] = value.detach()
        for name, leaf in leaves.items():
            out[f"{mode}/grad/{name}"] = torch.zeros_like(leaf) if leaf.grad is None else leaf.grad.detach().clone()
    return out


def ddp_param_grad(batch: dict[str, torch.Tensor], rows: slice, ddp: bool) -> torch.Tensor:
    """Gradient of a linear 'tower' (features = normalize(W x)) under the clip-level loss."""
    from ophclip.loss import HierarchicalLoss, LossCfg

    layer = torch.nn.Linear(5, DIM, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(batch["weight"])
    module = torch.nn.parallel.DistributedDataParallel(layer) if ddp else layer
    feats = F.normalize(module(batch["inputs"][rows]), dim=-1)
    # No rank/world_size given: the loss must pick them up from the initialised process group.
    loss_fn = HierarchicalLoss(LossCfg(repeated_text="ignore", local_loss=True))
    loss_fn.clip_loss(feats, batch["text"][rows], torch.tensor(SCALE), text_ids=batch["text_ids"][rows])[
        "total"
    ].backward()
    return layer.weight.grad.detach().clone()


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        full = global_batch()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        local = {k: (v[rows] if k not in ("weight",) else v) for k, v in full.items()}
        results = {}
        for i, flags in enumerate(FLAG_CASES):
            for key, value in losses_and_grads(local, flags, rank, WORLD).items():
                results[f"case{i}/{key}"] = value
        results["ddp_weight_grad"] = ddp_param_grad(full, rows, ddp=True)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, str(_free_port()), str(out_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"distributed run failed:\n{proc.stdout}\n{proc.stderr}"
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("case", range(len(FLAG_CASES)))
@pytest.mark.parametrize("mode", ["soft_positive", "feature_aug"])
def test_losses_and_feature_grads_equal_single_process(rank_results, case, mode):
    flags = FLAG_CASES[case]
    reference = losses_and_grads(global_batch(), flags, rank=0, world_size=1)
    prefix = f"case{case}/{mode}"
    loss_names = [k.split("/loss/")[1] for k in rank_results[0] if k.startswith(f"{prefix}/loss/")]
    assert {"clip", "total", "video_title", "video_narration", "video_retrieval", "video_total"} <= set(
        loss_names
    )
    for name in loss_names:
        per_rank = torch.stack([r[f"{prefix}/loss/{name}"] for r in rank_results])
        expected = reference[f"{mode}/loss/{name}"]
        if flags["local_loss"]:
            torch.testing.assert_close(per_rank.mean(), expected, atol=1e-5, rtol=0, msg=f"{name}")
        else:
            torch.testing.assert_close(per_rank, expected.expand(WORLD), atol=1e-5, rtol=0, msg=f"{name}")
    if flags.get("frame_text_weight"):
        assert "frame_text" in loss_names
    for name in ("clip", "frames", "text", "video", "title", "narration", "neighbours"):
        grads = torch.cat([r[f"{prefix}/grad/{name}"] for r in rank_results])
        torch.testing.assert_close(
            grads, WORLD * reference[f"{mode}/grad/{name}"], atol=1e-5, rtol=0, msg=name
        )


def test_ddp_parameter_gradient_equals_single_process(rank_results):
    full = global_batch()
    expected = ddp_param_grad(full, slice(None), ddp=False)
    for r in rank_results:
        torch.testing.assert_close(r["ddp_weight_grad"], expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 1e-3  # a vanishing gradient would make the comparison empty


if __name__ == "__main__":
    import torch.multiprocessing as mp

    # fork: the ranks inherit the imported torch instead of importing it again (slow on a busy CPU).
    mp.start_processes(
        _worker, args=(int(sys.argv[1]), sys.argv[2]), nprocs=WORLD, join=True, start_method="fork"
    )
