"""DDP for real: 2 gloo processes on the CPU give the loss and gradients of one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

WORKER = Path(__file__).with_name("ddp_worker.py")
# Plain DDP, and local_loss (own rows vs all columns) with cached-feature accumulation.
VARIANTS = [[], ["loss.local_loss=true", "train.accum_freq=2"]]


def _run(args: list[str], env_extra: dict[str, str] | None = None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(dataset_root, tiny_model_config, tmp_path):
    base = tiny_overrides(dataset_root, tiny_model_config, tmp_path, **{"loss.repeated_text": "ignore"})
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    single_dir.mkdir()
    ddp_dir.mkdir()
    _run([sys.executable, str(WORKER), str(single_dir), json.dumps([[]]), *base])
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(ddp_dir), json.dumps(VARIANTS), *base]
    )
    reference = torch.load(single_dir / "variant0-rank0.pt", weights_only=True)
    for level in ("clip", "video"):
        assert sum(float(g.norm()) for g in reference[level]["grads"].values()) > 1e-3
        assert {"visual.conv1.weight", "text.token_embedding.weight", "logit_scale"} <= set(reference[level]["grads"])
    for k, variant in enumerate(VARIANTS):
        ranks = [torch.load(ddp_dir / f"variant{k}-rank{r}.pt", weights_only=True) for r in range(2)]
        for level in ("clip", "video"):
            ref = reference[level]
            if level == "video":
                # Each rank saw its half of the single process's global batch.
                assert ranks[0][level]["video_ids"] + ranks[1][level]["video_ids"] == ref["video_ids"]
            for rank in ranks:
                got = rank[level]
                assert got["losses"].keys() == ref["losses"].keys()
                for term, value in ref["losses"].items():
                    assert got["losses"][term] == pytest.approx(value, abs=1e-5), (variant, level, term)
                assert got["grads"].keys() == ref["grads"].keys()
                for name, grad in ref["grads"].items():
                    torch.testing.assert_close(got["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=f"{variant} {level} {name}")
            # Gradients are all-reduced: both ranks hold the same values.
            for name in ref["grads"]:
                assert torch.equal(ranks[0][level]["grads"][name], ranks[1][level]["grads"][name])
