"""Conversion to faiss rows: zero-copy where the input already fits, one copy otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.convert import as_float32_rows, as_id_list, l2_normalized
from retrieval.errors import MemoryBankError


def test_float32_numpy_and_cpu_tensor_are_not_copied():
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    assert np.shares_memory(as_float32_rows(x, 4), x)
    t = torch.randn(8, 4)
    assert np.shares_memory(as_float32_rows(t, 4), t.numpy())
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert l2_normalized(unit) is unit


def test_other_layouts_are_converted_once_and_normalised_by_the_reference_formula():
    t = torch.randn(4, 6, dtype=torch.float64).t()  # (6, 4), not contiguous, float64
    rows = as_float32_rows(t, 4)
    assert rows.dtype == np.float32 and rows.flags.c_contiguous
    np.testing.assert_allclose(rows, t.numpy(), rtol=1e-6)
    normed = l2_normalized(rows)
    np.testing.assert_allclose(
        normed, t.numpy() / np.linalg.norm(t.numpy(), axis=1, keepdims=True), atol=1e-6
    )
    assert not np.shares_memory(normed, rows)
    assert as_float32_rows([0.0, 1.0, 2.0], 3).shape == (1, 3)


def test_bad_shapes_and_ids():
    with pytest.raises(MemoryBankError, match=r"expected shape \(n, 4\), got \(2, 3, 4\)"):
        as_float32_rows(np.zeros((2, 3, 4)), 4)
    with pytest.raises(MemoryBankError, match="cannot read vectors"):
        as_float32_rows([["a", "b"]], 2)
    assert as_id_list("one") == ["one"]
    assert as_id_list(np.array(["a", "b"])) == ["a", "b"]
    with pytest.raises(MemoryBankError, match=r"ids\[1\] is the empty string"):
        as_id_list(["a", ""])
