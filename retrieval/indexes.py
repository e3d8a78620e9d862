"""The three index kinds a :class:`~retrieval.bank.MemoryBank` can hold, behind one small interface.

Every kind searches by inner product over L2-normalised vectors (so scores are
cosines) and keys vectors by int64 *labels* that never change while the vector
lives; :class:`MemoryBank` maps string video ids to those labels.

``flat`` (``IndexIDMap2(IndexFlatIP)``), the default
    Exact search. Use it up to about 1M vectors on a CPU (a 4,096-query top-16 search
    over 100k x 512 takes about a second on 2 cores; see ``benchmarks/perf_bank.py``)
    and whenever results must be exact, e.g. in tests and evaluation. Updates are
    written in place into faiss's storage; removes compact it.
``ivf`` (``IndexIVFFlat`` with a hashtable direct map)
    Approximate: a query scans only ``nprobe`` of ``nlist`` clusters. Use it beyond
    about 1M vectors, or when search time matters more than the last per cent of
    recall. The hashtable direct map makes update and remove work by label without
    an O(n) array. The clusters are trained on the first vectors added; after a
    new encoder moved every embedding, build a new bank (``full`` refresh) so the
    clusters are trained again on the new embeddings.
``hnsw`` (``IndexHNSWFlat``)
    Approximate, graph-based: the fastest CPU search at high recall for mid-size
    banks that change rarely. faiss cannot remove from an HNSW graph, so the bank
    keeps a copy of the vectors and *rebuilds* the graph (before the next search)
    after any update or remove. Use it for a bank refreshed only as a whole.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import faiss
import numpy as np

from .errors import MemoryBankError

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")

# faiss k-means wants at least this many training points per centroid.
IVF_MIN_POINTS_PER_LIST = 39


def default_nlist(n: int) -> int:
    """About 4 sqrt(n) lists (faiss's rule of thumb), with at least 39 training points per list."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // IVF_MIN_POINTS_PER_LIST)))


class IndexKind:
    """One faiss index plus what it takes to add, remove, update and search by label.

    ``from_index`` takes the object ``faiss.read_index`` returned (already of its
    concrete class) and keeps *that* Python object: it owns the C++ index, and a
    ``downcast_index`` view of it would not keep it alive.
    """

    name = ""

    def __init__(self, dim: int):
        self.dim = dim

    # -- interface --------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        raise NotImplementedError

    def add(self, labels: np.ndarray, x: np.ndarray) -> None:
        raise NotImplementedError

    def remove(self, labels: np.ndarray) -> None:
        raise NotImplementedError

    def update(self, labels: np.ndarray, x: np.ndarray) -> None:
        self.remove(labels)
        self.add(labels, x)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels), each (n, k); label -1 where fewer than k vectors exist."""
        raise NotImplementedError

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def search_index(self) -> Any:
        """The faiss index a GPU replica is made from (labels must come out of it, or be mapped back)."""
        raise NotImplementedError

    def gpu_positions_to_labels(self, found: np.ndarray) -> np.ndarray:
        """Map what a GPU replica of :meth:`search_index` returns to labels (identity unless overridden)."""
        return found

    def cpu_index(self) -> Any:
        """The faiss index that is saved to disk."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def set_search_params(self, **params: Any) -> None:
        for key in params:
            raise MemoryBankError(f"index kind {self.name!r} has no search parameter {key!r}")

    @classmethod
    def from_index(cls, index: Any, dim: int, params: dict[str, Any]) -> IndexKind:
        raise NotImplementedError


class FlatKind(IndexKind):
    name = "flat"

    def __init__(self, dim: int, index: Any = None):
        super().__init__(dim)
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._flat = faiss.downcast_index(self.index.index)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, labels: np.ndarray, x: np.ndarray) -> None:
        self.index.add_with_ids(x, labels)

    def remove(self, labels: np.ndarray) -> None:
        self.index.remove_ids(faiss.IDSelectorBatch(labels))

    def update(self, labels: np.ndarray, x: np.ndarray) -> None:
        # In place: positions do not move, so the id map (kept ascending, since labels are
        # handed out in increasing order and removes preserve order) stays valid.
        id_map = self._id_map_view()
        pos = np.searchsorted(id_map, labels)
        if not np.array_equal(id_map[np.minimum(pos, len(id_map) - 1)], labels):
            super().update(labels, x)  # id map not sorted (an index built elsewhere): remove + add
            return
        xb = faiss.rev_swig_ptr(self._flat.get_xb(), self.ntotal * self.dim).reshape(self.ntotal, self.dim)
        xb[pos] = x

    def _id_map_view(self) -> np.ndarray:
        n = self.index.id_map.size()
        return faiss.rev_swig_ptr(self.index.id_map.data(), n) if n else np.empty(0, dtype=np.int64)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(x, k)

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(labels)

    def search_index(self) -> Any:
        return self._flat

    def gpu_positions_to_labels(self, found: np.ndarray) -> np.ndarray:
        id_map = self._id_map_view()
        return np.where(found >= 0, id_map[np.maximum(found, 0)], -1)

    def cpu_index(self) -> Any:
        return self.index

    @classmethod
    def from_index(cls, index: Any, dim: int, params: dict[str, Any]) -> FlatKind:
        return cls(dim, index=index)


class IVFKind(IndexKind):
    name = "ivf"

    def __init__(
        self,
        dim: int,
        nlist: int | None = None,
        nprobe: int = 16,
        train_points: int | None = None,
        index: Any = None,
    ):
        super().__init__(dim)
        self.nlist = nlist
        self.nprobe = int(nprobe)
        # k-means cost grows with the training set; faiss itself caps it at 256 points per list,
        # and 30-100 per list already place the centroids well.
        self.train_points = train_points
        self.index = index  # made on the first add, when there is data to train the clusters on
        if index is not None:
            self.nlist = int(index.nlist)

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _build(self, x: np.ndarray) -> None:
        n = len(x)
        nlist = self.nlist if self.nlist is not None else default_nlist(n)
        if n < nlist:
            raise MemoryBankError(
                f"IVF with nlist={nlist} needs at least {nlist} vectors in the first add to train its clusters, "
                f"got {n}; add more vectors at once, lower nlist, or use index='flat'"
            )
        quantizer = faiss.IndexFlatIP(self.dim)
        # faiss's Python wrapper keeps the quantizer alive as long as the IVF index.
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        train = x
        if self.train_points is not None and n > self.train_points:
            rows = np.sort(np.random.default_rng(0).choice(n, self.train_points, replace=False))
            train = x[rows]
        logger.info("training IVF clusters: nlist=%d on %d of %d vectors", nlist, len(train), n)
        index.train(train)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.index, self.nlist = index, nlist

    def add(self, labels: np.ndarray, x: np.ndarray) -> None:
        if self.index is None:
            self._build(x)
        self.index.add_with_ids(x, labels)

    def remove(self, labels: np.ndarray) -> None:
        if self.index is not None:
            # The hashtable direct map removes only through an IDSelectorArray.
            self.index.remove_ids(faiss.IDSelectorArray(labels))

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.nprobe = self.nprobe
        return self.index.search(x, k)

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(labels)

    def search_index(self) -> Any:
        self.index.nprobe = self.nprobe
        return self.index

    def cpu_index(self) -> Any:
        return self.index

    def params(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "train_points": self.train_points}

    def set_search_params(self, nprobe: int | None = None, **params: Any) -> None:
        super().set_search_params(**params)
        if nprobe is not None:
            self.nprobe = int(nprobe)

    @classmethod
    def from_index(cls, index: Any, dim: int, params: dict[str, Any]) -> IVFKind:
        # The direct map is rebuilt by read_index for hashtables, but set it again to be sure
        # updates and removes keep working on a loaded bank.
        if index.direct_map.type != faiss.DirectMap.Hashtable:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return cls(dim, nprobe=params.get("nprobe", 16), train_points=params.get("train_points"), index=index)


class HNSWKind(IndexKind):
    name = "hnsw"

    def __init__(
        self, dim: int, m: int = 32, ef_construction: int = 80, ef_search: int = 64, index: Any = None
    ):
        super().__init__(dim)
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        # faiss cannot remove from the graph: this copy of the vectors is what a rebuild uses.
        self._labels = np.empty(0, dtype=np.int64)
        self._vectors = np.empty((0, dim), dtype=np.float32)
        self._row_of: dict[int, int] | None = None
        self._dirty = False
        if index is not None:
            self.index = index
            n = int(index.ntotal)
            self._labels = faiss.vector_to_array(index.id_map).astype(np.int64)
            self._vectors = index.index.reconstruct_n(0, n) if n else self._vectors
        else:
            self.index = self._new_index()

    def _new_index(self) -> Any:
        hnsw = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self.ef_construction
        return faiss.IndexIDMap2(hnsw)

    @property
    def ntotal(self) -> int:
        return len(self._labels)

    def add(self, labels: np.ndarray, x: np.ndarray) -> None:
        self._labels = np.concatenate([self._labels, labels])
        self._vectors = np.concatenate([self._vectors, x])
        self._row_of = None
        if not self._dirty:
            self.index.add_with_ids(x, labels)  # a clean graph grows in place; a dirty one is rebuilt anyway

    def remove(self, labels: np.ndarray) -> None:
        keep = ~np.isin(self._labels, labels)
        self._labels, self._vectors = self._labels[keep], self._vectors[keep]
        self._row_of = None
        self._dirty = True

    def _rebuild_if_dirty(self) -> None:
        if not self._dirty:
            return
        logger.info("rebuilding the HNSW graph over %d vectors (HNSW cannot remove in place)", self.ntotal)
        self.index = self._new_index()
        if self.ntotal:
            self.index.add_with_ids(self._vectors, self._labels)
        self._dirty = False

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._rebuild_if_dirty()
        faiss.downcast_index(self.index.index).hnsw.efSearch = max(self.ef_search, k)
        return self.index.search(x, k)

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        if self._row_of is None:
            self._row_of = {int(label): row for row, label in enumerate(self._labels)}
        return self._vectors[[self._row_of[int(label)] for label in labels]]

    def search_index(self) -> Any:
        raise MemoryBankError("HNSW indexes have no faiss GPU implementation; they search on the CPU")

    def cpu_index(self) -> Any:
        self._rebuild_if_dirty()
        return self.index

    def params(self) -> dict[str, Any]:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def set_search_params(self, ef_search: int | None = None, **params: Any) -> None:
        super().set_search_params(**params)
        if ef_search is not None:
            self.ef_search = int(ef_search)

    @classmethod
    def from_index(cls, index: Any, dim: int, params: dict[str, Any]) -> HNSWKind:
        return cls(
            dim,
            m=params.get("m", 32),
            ef_construction=params.get("ef_construction", 80),
            ef_search=params.get("ef_search", 64),
            index=index,
        )


_KINDS: dict[str, type[IndexKind]] = {"flat": FlatKind, "ivf": IVFKind, "hnsw": HNSWKind}


def make_index_kind(kind: str, dim: int, **params: Any) -> IndexKind:
    """A new, empty index of ``kind`` ("flat" | "ivf" | "hnsw") with kind-specific ``params``."""
    if kind not in _KINDS:
        raise MemoryBankError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    try:
        return _KINDS[kind](dim, **params)
    except TypeError as e:
        raise MemoryBankError(f"index kind {kind!r}: bad parameters {sorted(params)} ({e})") from None


def index_kind_from_faiss(kind: str, index: Any, dim: int, params: dict[str, Any]) -> IndexKind:
    if kind not in _KINDS:
        raise MemoryBankError(
            f"unknown index kind {kind!r} in a saved bank; choose one of {', '.join(INDEX_KINDS)}"
        )
    return _KINDS[kind].from_index(index, dim, params)
