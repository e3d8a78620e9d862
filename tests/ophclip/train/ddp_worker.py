"""Run under torchrun (or alone): gradients of one clip step and one video step, saved per rank.

    python ddp_worker.py OUT_DIR VARIANTS_JSON key=value ...

``VARIANTS_JSON`` is a JSON list of extra override lists; each variant builds a fresh
Trainer (with its own output folder) and writes ``OUT_DIR/<variant>-rank<r>.pt`` holding
the rank-averaged losses and every parameter's gradient after DDP's all-reduce.
Used by test_train_ddp.py; not a test itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ophclip.config import load_config
from ophclip.distributed import init_distributed, shutdown
from ophclip.train import PretrainConfig, Trainer


def gradients(trainer: Trainer) -> dict:
    out = {}
    for level in ("clip", "video"):
        batch = trainer.next_batch(level)
        trainer.model.train()
        losses = trainer.forward_backward(level, batch)
        grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        trainer.optimizer.zero_grad(set_to_none=True)
        out[level] = {"losses": losses, "grads": grads, "video_ids": batch.get("video_id")}
    return out


def main() -> None:
    out_dir, variants, base = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
    info = init_distributed("cpu")
    for k, extra in enumerate(variants):
        cfg = load_config(PretrainConfig, None, base + extra + [f"train.output_dir={out_dir / f'run{k}'}"])
        trainer = Trainer(cfg, dist=info)
        torch.save(gradients(trainer), out_dir / f"variant{k}-rank{info.rank}.pt")
    shutdown(info)


if __name__ == "__main__":
    main()
