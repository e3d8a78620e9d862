"""GPU detection and replica placement.

There is no GPU here, so the faiss-cpu build is checked for what it is, and the
placement logic (one GPU vs sharded over several) runs against a recording stand-in
for a faiss GPU build: the only way to exercise that branch on this machine.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from retrieval import MemoryBank, gpu_available, num_gpus
from retrieval.gpu import GpuReplicator, resolve_use_gpu


def test_cpu_build_reports_no_gpu_and_bank_falls_back(caplog):
    assert num_gpus() == 0 and not gpu_available()
    assert resolve_use_gpu("auto") is False
    with caplog.at_level(logging.WARNING, logger="retrieval.gpu"):
        bank = MemoryBank(8, use_gpu=True)
    assert "searching on the CPU" in caplog.text
    bank.add(["a", "b"], np.eye(8, dtype=np.float32)[:2])
    assert bank.search(np.eye(8, dtype=np.float32)[:1], 1).ids.tolist() == [["a"]]


def fake_gpu_faiss(ngpu: int, calls: list):
    class Options:
        shard = False

    return types.SimpleNamespace(
        StandardGpuResources=lambda: object(),
        get_num_gpus=lambda: ngpu,
        GpuClonerOptions=Options,
        GpuMultipleClonerOptions=Options,
        index_cpu_to_gpu=lambda res, dev, index, co: calls.append(("one", dev, co.shard)) or "gpu-index",
        index_cpu_to_gpu_multiple_py=lambda resources, index, co, gpus: (
            calls.append(("multi", tuple(gpus), co.shard)) or "sharded-index"
        ),
    )


def test_one_gpu_replicates_and_several_gpus_shard():
    calls: list = []
    assert GpuReplicator(faiss_module=fake_gpu_faiss(1, calls)).replicate("cpu") == "gpu-index"
    assert GpuReplicator(faiss_module=fake_gpu_faiss(4, calls)).replicate("cpu") == "sharded-index"
    # A DDP rank pins its replica to its own GPU.
    assert GpuReplicator([2], faiss_module=fake_gpu_faiss(4, calls)).replicate("cpu") == "gpu-index"
    assert calls == [("one", 0, False), ("multi", (0, 1, 2, 3), True), ("one", 2, False)]
    with pytest.raises(ValueError, match="not all in 0..3"):
        GpuReplicator([5], faiss_module=fake_gpu_faiss(4, calls))
    no_gpu_build = types.SimpleNamespace(get_num_gpus=lambda: 2)  # faiss-cpu: no StandardGpuResources
    assert num_gpus(no_gpu_build) == 0
    assert num_gpus(fake_gpu_faiss(0, calls)) == 0
