"""Atomic training checkpoints: ``<output_dir>/checkpoints/{latest,best}.pt``.

A checkpoint holds everything a resumed run needs to continue bit-for-bit: model,
optimizer and grad-scaler states, the step, each level's data position
(batches consumed, i.e. epoch and position in the epoch) and every rank's RNG states.
Files are written to a temporary sibling then moved with ``os.replace``, so a kill at any moment
leaves the previous checkpoint intact. They contain only tensors and plain Python
values, and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ophbase.io import atomic_copy, atomic_path

from ..errors import ModelError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
LATEST = "latest.pt"
BEST = "best.pt"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj: Any) -> Any:
    # random.setstate insists on tuples; a serialiser may hand back lists.
    if isinstance(obj, (list, tuple)):
        return tuple(_as_tuple(x) for x in obj)
    return obj


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a temporary sibling, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)
    return Path(path)


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a finished checkpoint (e.g. latest -> best) atomically."""
    return atomic_copy(src, dst)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a truncated or foreign file
        raise ModelError(f"{path}: not a readable ophclip checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path}: not an ophclip training checkpoint (format {FORMAT_VERSION} expected)")
    return state


def resolve_resume(resume: str | Path | None, output_dir: str | Path) -> Path | None:
    """``"latest"`` -> the run's latest checkpoint (None if there is none yet); a path -> that file."""
    if resume is None or resume == "":
        return None
    if str(resume) == "latest":
        path = checkpoint_dir(output_dir) / LATEST
        if not path.is_file():
            logger.info("no checkpoint at %s yet; starting from step 0", path)
            return None
        return path
    if str(resume) == "best":
        path = checkpoint_dir(output_dir) / BEST
    else:
        path = Path(resume)
    if not path.is_file():
        raise ModelError(f"--resume {resume}: checkpoint {path} not found")
    return path
