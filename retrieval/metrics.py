"""How good are the neighbours: agreement of a label (e.g. surgery type) between queries and results."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def label_agreement(
    neighbour_ids: np.ndarray | Sequence[Sequence[str | None]],
    query_labels: Sequence[str],
    label_of: Mapping[str, str],
) -> float:
    """Fraction of returned neighbours whose label equals their query's label.

    ``neighbour_ids`` is (n_queries, k) as :meth:`MemoryBank.search` returns (None marks
    a missing result and is not counted); a neighbour without a label counts as a
    disagreement. NaN when nothing was returned.
    """
    rows = neighbour_ids.tolist() if isinstance(neighbour_ids, np.ndarray) else neighbour_ids
    if len(rows) != len(query_labels):
        raise ValueError(f"{len(rows)} rows of neighbours but {len(query_labels)} query labels")
    hits = total = 0
    for row, label in zip(rows, query_labels, strict=True):
        for vid in row:
            if vid is None:
                continue
            total += 1
            hits += label_of.get(vid) == label
    return hits / total if total else float("nan")
