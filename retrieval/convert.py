"""Torch/numpy -> the float32, C-contiguous, L2-normalised rows faiss wants, copying only when needed.

faiss takes numpy arrays. A CPU ``torch.Tensor`` that is float32 and contiguous is
viewed as numpy with ``Tensor.numpy()`` (shared memory, no copy); other dtypes,
layouts and devices cost exactly one copy. L2 normalisation writes into a fresh
array only when some row is not already unit length, so the embeddings a model
returns with ``normalize=True`` go in untouched. (``faiss.contrib.torch_utils`` is
not used: it patches every faiss index class of the process as a side effect.)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .errors import MemoryBankError

logger = logging.getLogger(__name__)

# Rows whose squared norm is within this of 1 count as unit length: float32
# normalisation itself leaves errors around 1e-7, and a model's F.normalize output
# should not be copied again.
UNIT_NORM_TOLERANCE = 1e-5


def as_float32_rows(x: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """Return ``x`` as a (n, dim) float32 C-contiguous array; a view when it already is one.

    Accepts numpy arrays, torch tensors (any device, detached here) and nested lists.
    A single vector of shape (dim,) becomes one row. Raises :class:`MemoryBankError`
    for a wrong shape or non-finite values, naming the first bad row.
    """
    arr = _to_numpy(x)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise MemoryBankError(
            f"{what}: expected shape (n, {dim}), got {tuple(arr.shape)}; "
            f"the bank was created with dim={dim} (embed_dim of the model that built it)"
        )
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise MemoryBankError(
            f"{what}: row {row} holds NaN or inf ({int((~finite).sum())} such rows); "
            "check the encoder output (a diverged model or an empty frame batch)"
        )
    return arr


def l2_normalized(x: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Rows of ``x`` scaled to unit length; ``x`` itself (no copy) when they already are.

    A zero row cannot be normalised and raises :class:`MemoryBankError`.
    """
    sq = np.einsum("ij,ij->i", x, x)
    zero = sq <= 0.0
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise MemoryBankError(
            f"{what}: row {row} is the zero vector, which has no direction to compare by cosine"
        )
    if np.all(np.abs(sq - 1.0) <= UNIT_NORM_TOLERANCE):
        return x
    return (x / np.sqrt(sq, dtype=np.float32)[:, None]).astype(np.float32, copy=False)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        import torch  # lazy: torch is optional for this package; needed only when a tensor arrives
    except ImportError:  # pragma: no cover - torch is a dependency of the distribution
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype != torch.float32:
            t = t.float()
        return t.numpy()  # shares memory with the tensor
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise MemoryBankError(
            f"cannot read vectors of type {type(x).__name__} as a float matrix ({e})"
        ) from None


def as_id_list(ids: Any, what: str = "ids") -> list[str]:
    """Ids as a list of non-empty strings (a single string counts as one id)."""
    if isinstance(ids, str):
        ids = [ids]
    out = []
    for i, v in enumerate(ids):
        if not isinstance(v, str):  # np.str_ is a str
            raise MemoryBankError(
                f"{what}[{i}] = {v!r} is a {type(v).__name__}; ids must be strings (video ids)"
            )
        if not v:
            raise MemoryBankError(f"{what}[{i}] is the empty string; every vector needs a video id")
        out.append(str(v))
    return out
