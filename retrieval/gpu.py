"""Run-time GPU detection and CPU -> GPU index replicas (sharded over several GPUs).

``faiss-cpu`` and ``faiss-gpu`` are exclusive installs, so GPU support is found at
run time, never assumed: a faiss build has GPU support when it exposes
``StandardGpuResources``, and it is usable when ``get_num_gpus() > 0``.

The CPU index stays the bank's source of truth (it is what gets saved, updated and
removed from); a GPU index is a search replica made from it and re-made after the
bank changes. With several GPUs the database is *sharded* (``shard=True``): each GPU
holds 1/n of the vectors and faiss merges the per-shard top-k, so a bank n times
larger than one GPU's memory still fits. HNSW has no GPU implementation in faiss and
stays on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faiss

logger = logging.getLogger(__name__)

# GPU k-selection works up to this k (faiss GPU limit); larger searches stay on the CPU.
GPU_MAX_K = 2048


def num_gpus(faiss_module: Any = faiss) -> int:
    """Number of GPUs faiss can use; 0 on a faiss-cpu build or a machine without GPUs."""
    if not hasattr(faiss_module, "StandardGpuResources"):
        return 0
    try:
        return int(faiss_module.get_num_gpus())
    except (AttributeError, RuntimeError):  # a GPU build whose driver is missing
        return 0


def gpu_available(faiss_module: Any = faiss) -> bool:
    return num_gpus(faiss_module) > 0


def resolve_use_gpu(use_gpu: bool | str, faiss_module: Any = faiss) -> bool:
    """``"auto"`` -> whether a GPU is usable; ``True`` when none is -> a warning and False."""
    if use_gpu == "auto":
        return gpu_available(faiss_module)
    if use_gpu and not gpu_available(faiss_module):
        logger.warning(
            "use_gpu=True but faiss has no usable GPU (faiss-cpu build or no device); searching on the CPU"
        )
        return False
    return bool(use_gpu)


class GpuReplicator:
    """Makes GPU search replicas of CPU indexes on a set of GPUs; holds their resources for reuse.

    One ``StandardGpuResources`` per GPU is created once (each reserves scratch
    memory), not per replica. ``devices`` defaults to every GPU; under DDP pass the
    rank's own device, so that ranks do not each spread a replica over all GPUs.
    """

    def __init__(self, devices: Sequence[int] | None = None, faiss_module: Any = faiss):
        self.faiss = faiss_module
        ngpu = num_gpus(faiss_module)
        if ngpu == 0:
            raise RuntimeError("GpuReplicator needs a faiss GPU build and at least one GPU")
        self.devices = list(range(ngpu)) if devices is None else [int(d) for d in devices]
        bad = [d for d in self.devices if not 0 <= d < ngpu]
        if bad or not self.devices:
            raise ValueError(f"GPU devices {self.devices} are not all in 0..{ngpu - 1}")
        self._resources = [faiss_module.StandardGpuResources() for _ in self.devices]

    def replicate(self, cpu_index: Any) -> Any:
        """A GPU copy of ``cpu_index`` (IndexFlat or IndexIVF*): on one GPU, or sharded over several."""
        f = self.faiss
        if len(self.devices) == 1:
            co = f.GpuClonerOptions()
            return f.index_cpu_to_gpu(self._resources[0], self.devices[0], cpu_index, co)
        co = f.GpuMultipleClonerOptions()
        co.shard = True
        return f.index_cpu_to_gpu_multiple_py(self._resources, cpu_index, co, self.devices)


_replicators: dict[tuple[int, ...] | None, GpuReplicator] = {}


def gpu_replicator(devices: Sequence[int] | None = None) -> GpuReplicator:
    """The process-wide replicator for ``devices`` (created on first use)."""
    key = None if devices is None else tuple(int(d) for d in devices)
    if key not in _replicators:
        _replicators[key] = GpuReplicator(devices)
    return _replicators[key]
