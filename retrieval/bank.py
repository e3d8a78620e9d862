"""The silent-video memory bank: string video ids -> unit vectors, searched by inner product.

    bank = MemoryBank(dim=512)                       # exact search; index="ivf" | "hnsw" for large banks
    bank.add(video_ids, embeddings)                  # numpy or torch, (n, 512); normalised on the way in
    scores, ids = bank.search(queries, k=16, exclude=[[vid] for vid in query_ids], max_score=0.98)
    bank.save("runs/bank")                           # faiss index + id table + bank.json, atomically
    bank = MemoryBank.load("runs/bank")

Ids are the manifest's video ids. Each is mapped to an int64 *label* handed out in
increasing order; a label never changes while its id is in the bank (``update``
rewrites the vector under the same label), so faiss results map back to ids at any
time. Scores are cosine similarities: vectors and queries are L2-normalised.

A bank is safe to use from several threads: each call holds the bank's lock, so a
search sees the bank before or after an ``update``, never half of it. To replace a
whole bank at once (a ``full`` refresh), build a new one and ``BankHolder.swap`` it in.

Index kinds and when to use each: see :mod:`retrieval.indexes`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ophbase.io import atomic_path, atomic_write_text, read_json

from .convert import as_float32_rows, as_id_list, l2_normalized
from .errors import MemoryBankError
from .gpu import GPU_MAX_K, gpu_replicator, resolve_use_gpu
from .indexes import INDEX_KINDS, IndexKind, index_kind_from_faiss, make_index_kind

logger = logging.getLogger(__name__)

BANK_FILE = "bank.json"
FORMAT_VERSION = 1


class SearchResult(NamedTuple):
    """``scores`` (n, k) float32 cosines, best first; ``ids`` (n, k) object array of str.

    Where fewer than k results exist (small bank, or exclusions), the score is -inf
    and the id is None.
    """

    scores: np.ndarray
    ids: np.ndarray


class MemoryBank:
    """A faiss index of L2-normalised vectors keyed by string ids.

    Args:
        dim: vector size (the model's ``embed_dim``).
        index: ``"flat"`` (exact, default), ``"ivf"`` or ``"hnsw"``; see :mod:`retrieval.indexes`.
        use_gpu: ``"auto"`` searches on GPU(s) when faiss has GPU support and a GPU
            exists, ``False`` never; the CPU index stays the source of truth.
        gpu_devices: GPUs for the search replica (default: all, sharded). Under DDP
            give the rank's own device.
        **index_params: ``nlist``, ``nprobe``, ``train_points`` (ivf); ``m``,
            ``ef_construction``, ``ef_search`` (hnsw).
    """

    def __init__(
        self,
        dim: int,
        index: str = "flat",
        *,
        use_gpu: bool | str = "auto",
        gpu_devices: Sequence[int] | None = None,
        **index_params: Any,
    ):
        if not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise MemoryBankError(f"dim must be a positive int (the embedding size), got {dim!r}")
        self.dim = int(dim)
        self._kind: IndexKind = make_index_kind(index, self.dim, **index_params)
        self._label_of: dict[str, int] = {}
        self._id_of_label = np.empty(0, dtype=object)  # label -> id (None once removed)
        self._next_label = 0
        self._lock = threading.RLock()
        self._use_gpu = resolve_use_gpu(use_gpu) and index != "hnsw"
        self._gpu_devices = None if gpu_devices is None else list(gpu_devices)
        self._gpu_index: Any = None  # search replica, dropped whenever the bank changes

    # -- inspection -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._kind.name

    @property
    def ids(self) -> list[str]:
        """The ids in the bank (insertion order; an updated id keeps its place)."""
        with self._lock:
            return list(self._label_of)

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._label_of

    def __repr__(self) -> str:
        return f"MemoryBank(dim={self.dim}, index={self.kind!r}, n={len(self)})"

    def label_of(self, video_id: str) -> int:
        """The stable int64 faiss label of ``video_id``."""
        try:
            return self._label_of[video_id]
        except KeyError:
            raise MemoryBankError(f"id {video_id!r} is not in the bank ({len(self)} ids)") from None

    def get_vectors(self, ids: Sequence[str] | str) -> np.ndarray:
        """The stored (normalised) vectors of ``ids``, as an (n, dim) float32 array."""
        ids = as_id_list(ids)
        with self._lock:
            labels = self._known_labels(ids, "get_vectors")
            if not len(labels):
                return np.empty((0, self.dim), dtype=np.float32)
            return np.asarray(self._kind.reconstruct(labels), dtype=np.float32)

    # -- changes ----------------------------------------------------------------------
    def add(self, ids: Sequence[str] | str, vectors: Any) -> None:
        """Add new ids. An id already in the bank, or given twice, is an error (use ``update``)."""
        ids, x = self._checked(ids, vectors, "add")
        with self._lock:
            present = [v for v in ids if v in self._label_of]
            if present:
                raise MemoryBankError(
                    f"add: {len(present)} id(s) already in the bank, e.g. {present[0]!r}; "
                    "use update() to replace their vectors, or upsert() for a mix of new and known ids"
                )
            if not ids:
                return
            labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
            self._kind.add(labels, x)
            self._next_label += len(ids)
            if len(self._id_of_label) < self._next_label:
                grown = np.empty(max(self._next_label, 2 * len(self._id_of_label)), dtype=object)
                grown[: len(self._id_of_label)] = self._id_of_label
                self._id_of_label = grown
            self._id_of_label[labels] = ids
            self._label_of.update(zip(ids, labels.tolist(), strict=True))
            self._gpu_index = None

    def update(self, ids: Sequence[str] | str, vectors: Any) -> None:
        """Replace the vectors of ids already in the bank; their labels do not change."""
        ids, x = self._checked(ids, vectors, "update")
        with self._lock:
            labels = self._known_labels(ids, "update")
            if len(labels):
                self._kind.update(labels, x)
                self._gpu_index = None

    def upsert(self, ids: Sequence[str] | str, vectors: Any) -> None:
        """``update`` the known ids and ``add`` the new ones, in one locked step."""
        ids, x = self._checked(ids, vectors, "upsert")
        with self._lock:
            known = np.array([v in self._label_of for v in ids], dtype=bool)
            if known.any():
                self.update([v for v, k in zip(ids, known, strict=True) if k], x[known])
            if (~known).any():
                self.add([v for v, k in zip(ids, known, strict=True) if not k], x[~known])

    def remove(self, ids: Sequence[str] | str) -> None:
        """Remove ids; an id not in the bank is an error. Other ids keep their labels."""
        ids = as_id_list(ids)
        _check_unique(ids, "remove")
        with self._lock:
            labels = self._known_labels(ids, "remove")
            if not len(labels):
                return
            self._kind.remove(labels)
            self._id_of_label[labels] = None
            for v in ids:
                del self._label_of[v]
            self._gpu_index = None

    def set_search_params(self, **params: Any) -> None:
        """Speed/recall knobs: ``nprobe`` (ivf), ``ef_search`` (hnsw)."""
        with self._lock:
            self._kind.set_search_params(**params)
            self._gpu_index = None

    # -- search -----------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Sequence[Iterable[str]] | None = None,
        max_score: float | None = None,
    ) -> SearchResult:
        """Top-``k`` ids by cosine for each query row.

        Args:
            queries: (n, dim) numpy array or torch tensor (normalised here).
            k: results per query.
            exclude: one iterable of ids per query that must not be returned (the
                query's own id, to drop self-matches). Ids not in the bank are ignored.
            max_score: drop results scoring above this cosine (near-duplicates of the
                query, e.g. the same footage re-uploaded), then fill up to k from below.
        """
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise MemoryBankError(f"search: k must be a positive int, got {k!r}")
        q = l2_normalized(as_float32_rows(queries, self.dim, "search queries"), "search queries")
        n = len(q)
        if exclude is not None and len(exclude) != n:
            raise MemoryBankError(
                f"search: exclude has {len(exclude)} entries for {n} queries; give one list of ids per query"
            )
        with self._lock:
            scores = np.full((n, k), -np.inf, dtype=np.float32)
            labels = np.full((n, k), -1, dtype=np.int64)
            ntotal = len(self)
            if n and ntotal:
                excluded = self._excluded_labels(exclude, n)
                self._search_filtered(q, k, excluded, max_score, scores, labels)
            ids = np.full((n, k), None, dtype=object)
            found = labels >= 0
            ids[found] = self._id_of_label[labels[found]]
        return SearchResult(scores, ids)

    def _search_filtered(
        self,
        q: np.ndarray,
        k: int,
        excluded: list[np.ndarray] | None,
        max_score: float | None,
        scores: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """Fill ``scores``/``labels`` in place, over-fetching until each row has k kept results."""
        ntotal = len(self)
        extra = max((len(e) for e in excluded), default=0) if excluded else 0
        fetch = min(ntotal, k + extra + (k if max_score is not None else 0))
        rows = np.arange(len(q))
        while len(rows):
            d, lab = self._raw_search(q[rows], fetch)
            keep = lab >= 0
            if max_score is not None:
                keep &= d <= max_score
            if excluded is not None:
                for j, r in enumerate(rows):
                    if len(excluded[r]):
                        keep[j] &= ~np.isin(lab[j], excluded[r])
            # Stable sort puts the kept results first, still best-first.
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            take = np.take_along_axis(keep, order, axis=1)
            scores[rows, : order.shape[1]] = np.where(take, np.take_along_axis(d, order, axis=1), -np.inf)
            labels[rows, : order.shape[1]] = np.where(take, np.take_along_axis(lab, order, axis=1), -1)
            short = keep.sum(axis=1) < k
            if fetch >= ntotal:
                break
            rows = rows[short]
            fetch = min(ntotal, 2 * fetch)

    def _raw_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._use_gpu and k <= GPU_MAX_K:
            if self._gpu_index is None:
                self._gpu_index = gpu_replicator(self._gpu_devices).replicate(self._kind.search_index())
            d, found = self._gpu_index.search(q, k)
            return d, self._kind.gpu_positions_to_labels(found)
        return self._kind.search(q, k)

    def _excluded_labels(self, exclude: Sequence[Iterable[str]] | None, n: int) -> list[np.ndarray] | None:
        if exclude is None:
            return None
        out = []
        for i in range(n):
            group = [exclude[i]] if isinstance(exclude[i], str) else exclude[i]
            out.append(np.array([self._label_of[v] for v in group if v in self._label_of], dtype=np.int64))
        return out

    # -- validation -------------------------------------------------------------------
    def _checked(self, ids: Any, vectors: Any, op: str) -> tuple[list[str], np.ndarray]:
        ids = as_id_list(ids, f"{op} ids")
        x = l2_normalized(as_float32_rows(vectors, self.dim, f"{op} vectors"), f"{op} vectors")
        if len(ids) != len(x):
            raise MemoryBankError(f"{op}: {len(ids)} ids but {len(x)} vectors; give one vector per id")
        _check_unique(ids, op)
        return ids, x

    def _known_labels(self, ids: list[str], op: str) -> np.ndarray:
        missing = [v for v in ids if v not in self._label_of]
        if missing:
            raise MemoryBankError(
                f"{op}: {len(missing)} id(s) not in the bank, e.g. {missing[0]!r}; "
                f"add() them first (the bank holds {len(self)} ids)"
            )
        return np.fromiter((self._label_of[v] for v in ids), dtype=np.int64, count=len(ids))

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the bank into ``directory``, atomically.

        The faiss index and the id table get fresh generation-stamped names and are
        each written to a temporary file and renamed; ``bank.json``, which names them,
        is replaced last. A reader therefore loads either the old bank or the new one,
        and a crash mid-save leaves the old bank intact. Files of older generations
        are deleted afterwards.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        gen = uuid.uuid4().hex[:12]
        with self._lock:
            index = self._kind.cpu_index()
            index_file = f"index-{gen}.faiss" if index is not None else None
            if index is not None:
                with atomic_path(directory / index_file) as tmp:  # faiss writes by file name
                    faiss.write_index(index, str(tmp))
            ids = list(self._label_of)
            table = pa.table(
                {
                    "id": pa.array(ids, pa.string()),
                    "label": pa.array([self._label_of[v] for v in ids], pa.int64()),
                }
            )
            ids_file = f"ids-{gen}.parquet"
            with atomic_path(directory / ids_file) as tmp:
                pq.write_table(table, str(tmp))
            meta = {
                "format_version": FORMAT_VERSION,
                "dim": self.dim,
                "index": self.kind,
                "index_params": self._kind.params(),
                "metric": "inner_product",
                "normalized": True,
                "count": len(ids),
                "next_label": self._next_label,
                "index_file": index_file,
                "ids_file": ids_file,
                "faiss_version": faiss.__version__,
            }
            atomic_write_text(directory / BANK_FILE, json.dumps(meta, indent=2) + "\n")
        for old in list(directory.glob("index-*.faiss")) + list(directory.glob("ids-*.parquet")):
            if gen not in old.name:
                old.unlink(missing_ok=True)
        logger.info("saved %s to %s", self, directory)
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, use_gpu: bool | str = "auto", gpu_devices: Sequence[int] | None = None
    ) -> MemoryBank:
        """Read a bank written by :meth:`save`; checks that the index and id table agree."""
        directory = Path(directory)
        meta_path = directory / BANK_FILE
        meta = read_json(meta_path, MemoryBankError, f"{directory} is not a memory bank folder (build one with "
                         "`ophclip bank build`)")
        try:
            dim, kind, count = int(meta["dim"]), meta["index"], int(meta["count"])
            params, ids_file, index_file = meta.get("index_params", {}), meta["ids_file"], meta["index_file"]
            next_label = int(meta["next_label"])
        except (ValueError, KeyError, TypeError) as e:
            raise MemoryBankError(
                f"{meta_path}: unreadable bank metadata ({type(e).__name__}: {e}); rebuild the bank"
            ) from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise MemoryBankError(
                f"{meta_path}: format_version {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}"
            )
        if kind not in INDEX_KINDS:
            raise MemoryBankError(f"{meta_path}: unknown index kind {kind!r}")
        try:
            table = pq.read_table(directory / ids_file).to_pydict()
        except (OSError, pa.ArrowInvalid) as e:
            raise MemoryBankError(
                f"{directory / ids_file}: cannot read the id table ({e}); rebuild the bank"
            ) from None
        bank = cls(dim, kind, use_gpu=use_gpu, gpu_devices=gpu_devices, **params)
        if index_file is not None:
            try:
                index = faiss.read_index(str(directory / index_file))
            except RuntimeError as e:
                raise MemoryBankError(
                    f"{directory / index_file}: cannot read the faiss index ({str(e).splitlines()[0]})"
                ) from None
            if index.d != dim:
                raise MemoryBankError(
                    f"{directory / index_file}: index dim {index.d} != {dim} in {BANK_FILE}"
                )
            bank._kind = index_kind_from_faiss(kind, index, dim, params)
        if not (len(table["id"]) == bank._kind.ntotal == count):
            raise MemoryBankError(
                f"{directory}: {BANK_FILE} says {count} vectors, the id table has {len(table['id'])}, "
                f"the index {bank._kind.ntotal}; the folder is inconsistent, rebuild the bank"
            )
        _check_unique(table["id"], f"{directory / ids_file}")
        bank._label_of = dict(zip(table["id"], table["label"], strict=True))
        bank._next_label = next_label
        bank._id_of_label = np.empty(next_label, dtype=object)
        if count:
            bank._id_of_label[np.asarray(table["label"], dtype=np.int64)] = table["id"]
        logger.info("loaded %s from %s", bank, directory)
        return bank


class BankHolder:
    """Holds the current bank; ``swap`` replaces it in one step.

    A search reads the bank reference once, then searches that bank to the end, so
    a search running while a refresh swaps banks sees the old bank or the new one,
    never a mix. The old bank is never mutated by a swap.
    """

    def __init__(self, bank: MemoryBank | None = None):
        self._bank = bank
        self._swap_lock = threading.Lock()
        self.generation = 0 if bank is None else 1

    @property
    def bank(self) -> MemoryBank | None:
        return self._bank

    def swap(self, new_bank: MemoryBank) -> MemoryBank | None:
        """Make ``new_bank`` current; return the previous bank."""
        with self._swap_lock:
            old, self._bank = self._bank, new_bank
            self.generation += 1
        return old

    def search(self, queries: Any, k: int, **kwargs: Any) -> SearchResult:
        bank = self._bank  # one read: the whole search uses this bank
        if bank is None:
            raise MemoryBankError("search before the first bank was built (the holder is empty)")
        return bank.search(queries, k, **kwargs)


def _check_unique(ids: Sequence[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(v for v in ids if v in seen or seen.add(v))
        raise MemoryBankError(f"{what}: id {dup!r} appears more than once; each id names one vector")
