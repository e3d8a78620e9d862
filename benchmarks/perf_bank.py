"""Memory-bank performance: search speed, approximate recall, refresh cost.

    python -m benchmarks.perf_bank                        # 100k and 1M x 512, 4,096 queries, top-16
    python -m benchmarks.perf_bank --sizes 20000 --dim 128 --out runs/perf_bank.json

For each bank size it measures, in the same run and on the same data:
  * exact top-k: faiss ``IndexFlatIP`` (through :class:`retrieval.MemoryBank`) against
    torch matmul + topk (chunked over the database so memory stays bounded);
  * IVF and HNSW: build time, search time and recall@k against the exact result;
  * refresh: rebuilding the whole bank from new embeddings (``full``) and updating a
    1 % slice in place (``incremental``);
  * retrieval's cost per training step: one batch of queries (``--batch``) searched
    against the bank, reported as a share of a reference step time (``--step-ms``).

The data is CLUSTERED like real embeddings (a mixture of Gaussians on the unit
sphere, queries from the same mixture): on isotropic Gaussian data every point is
nearly equidistant from every other, and IVF/HNSW recall numbers mean nothing.
Prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from benchmarks._machine import write_json
from retrieval import MemoryBank

logger = logging.getLogger(__name__)


def clustered_embeddings(
    n: int,
    dim: int,
    *,
    n_clusters: int = 1024,
    spread: float = 1.0,
    centre_spread: float = 0.5,
    seed: int = 0,
    centers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors from a two-level Gaussian mixture on the sphere, and its cluster centres.

    About sqrt(n_clusters) random unit *group* directions (kinds of surgery) each carry
    clusters (scenes, phases) whose centres are ``normalise(g + centre_spread * z / sqrt(dim))``;
    a point is ``normalise(c + spread * z / sqrt(dim))``. Clusters of one group overlap,
    as a trained encoder's embeddings do, so IVF/HNSW recall is below 1 and informative
    (isolated clusters make every approximate index look perfect). With the defaults a
    query's best cosine is about 0.6. Pass ``centers`` to draw queries from the same
    mixture as a database.
    """
    rng = np.random.default_rng(seed)
    if centers is None:
        n_groups = max(1, round(np.sqrt(n_clusters)))
        groups = rng.standard_normal((n_groups, dim))
        groups /= np.linalg.norm(groups, axis=1, keepdims=True)
        centers = groups[rng.integers(0, n_groups, n_clusters)]
        centers = centers + (centre_spread / np.sqrt(dim)) * rng.standard_normal((n_clusters, dim))
        centers = (centers / np.linalg.norm(centers, axis=1, keepdims=True)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 65536  # generate in chunks: 1M x 512 float64 noise at once would be 4 GB
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        chunk = centers[rng.integers(0, len(centers), hi - lo)] + (spread / np.sqrt(dim)) * noise
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[lo:hi] = chunk
    return out, centers


def torch_topk(
    queries: np.ndarray, database: np.ndarray, k: int, db_chunk: int = 131072
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product with torch matmul + topk, merging per database chunk.

    The database is viewed, not copied (``torch.from_numpy``); the score matrix is
    built one chunk at a time so 4,096 queries x 1M never materialise (16 GB).
    """
    q = torch.from_numpy(queries)
    best_s = torch.full((len(q), k), -float("inf"))
    best_i = torch.full((len(q), k), -1, dtype=torch.int64)
    for lo in range(0, len(database), db_chunk):
        chunk = torch.from_numpy(database[lo : lo + db_chunk])
        s, i = torch.topk(q @ chunk.T, min(k, len(chunk)), dim=1)
        all_s, all_i = torch.cat([best_s, s], 1), torch.cat([best_i, i + lo], 1)
        best_s, pos = torch.topk(all_s, k, dim=1)
        best_i = torch.gather(all_i, 1, pos)
    return best_s.numpy(), best_i.numpy()


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k (row-wise sets of ids)."""
    k = truth.shape[1]
    return float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(found.tolist(), truth.tolist(), strict=True)])
    )


def _timed(fn, repeat: int = 1):
    """(result of the last call, median seconds per call)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def bench_size(n: int, args: argparse.Namespace) -> list[dict]:
    """Every measurement at one bank size: one row per (method, setting)."""
    seed = args.seed + n
    logger.info("generating %d x %d clustered embeddings", n, args.dim)
    db, centers = clustered_embeddings(n, args.dim, n_clusters=args.clusters, seed=seed)
    queries, _ = clustered_embeddings(args.queries, args.dim, centers=centers, seed=seed + 1)
    ids = [f"s{i}" for i in range(n)]
    batch = queries[: args.batch]
    slice_n = max(1, n // 100)
    new_slice = clustered_embeddings(slice_n, args.dim, centers=centers, seed=seed + 2)[0]
    rows: list[dict] = []

    def measure(method: str, setting: str, search, build_s: float, truth) -> object:
        res, search_s = _timed(lambda: search(queries))
        _, batch_s = _timed(lambda: search(batch), repeat=args.repeat)
        recall = 1.0 if truth is None else recall_at_k(res, truth)
        rows.append(
            {
                "table": "search",
                "n": n,
                "method": method,
                "setting": setting,
                "build_s": round(build_s, 3),
                "search_s": round(search_s, 3),
                "queries_per_s": round(args.queries / search_s, 1),
                f"recall@{args.k}": round(recall, 4),
                f"batch{args.batch}_ms": round(1000 * batch_s, 2),
                "step_share_pct": round(100.0 * batch_s / (args.step_ms / 1000.0), 2),
            }
        )
        return res

    def refresh_row(method: str, full_s: float, update_s: float) -> None:
        rows.append(
            {
                "table": "refresh",
                "n": n,
                "method": method,
                "full_rebuild_s": round(full_s, 3),
                "update_slice": slice_n,
                "update_slice_s": round(update_s, 4),
            }
        )

    # Exact: faiss flat through MemoryBank; its result is the truth for every recall below.
    flat = MemoryBank(args.dim, "flat", use_gpu=False)
    _, build_s = _timed(lambda: flat.add(ids, db))
    truth = measure("faiss flat", "exact", lambda q: flat.search(q, args.k).ids, build_s, None)
    _, upd_s = _timed(lambda: flat.update(ids[:slice_n], new_slice), repeat=args.repeat)
    refresh_row("faiss flat", build_s, upd_s)
    flat = None  # free its copy of the vectors before the next index

    # Exact: torch matmul + topk, same data, same run.
    if "torch" in args.methods:
        id_array = np.asarray(ids, dtype=object)
        measure("torch matmul+topk", "exact", lambda q: id_array[torch_topk(q, db, args.k)[1]], 0.0, truth)

    for method in ("ivf", "hnsw"):
        if method not in args.methods:
            continue
        if method == "hnsw" and n > args.hnsw_max:
            logger.warning(
                "skipping HNSW at n=%d (> --hnsw-max %d): its build is the slowest step", n, args.hnsw_max
            )
            continue
        params = (
            {"m": args.hnsw_m}
            if method == "hnsw"
            else {"nlist": args.nlist, "train_points": args.ivf_train_points}
        )
        bank = MemoryBank(args.dim, method, use_gpu=False, **params)
        _, build_s = _timed(lambda bank=bank: bank.add(ids, db))
        knob = "nprobe" if method == "ivf" else "ef_search"
        for value in args.nprobe if method == "ivf" else args.ef_search:
            bank.set_search_params(**{knob: value})
            setting = ", ".join(f"{k}={v}" for k, v in bank._kind.params().items() if v is not None)
            measure(method, setting, lambda q, bank=bank: bank.search(q, args.k).ids, build_s, truth)

        # Incremental refresh of a 1 % slice; for HNSW that means a full graph rebuild.
        def update_and_search(bank=bank) -> None:
            bank.update(ids[:slice_n], new_slice)
            bank.search(batch[:1], args.k)

        _, upd_s = _timed(update_and_search)
        refresh_row(method, build_s, upd_s)
        bank = None
    return rows


def print_tables(rows: list[dict]) -> None:
    """Plain-text tables on stdout (this is a script's report, not library logging)."""
    for table in ("search", "refresh"):
        part = [{k: v for k, v in r.items() if k != "table"} for r in rows if r["table"] == table]
        if not part:
            continue
        cols = list(part[0])
        widths = [max(len(c), *(len(str(r.get(c, ""))) for r in part)) for c in cols]
        print(f"\n{table}")
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in part:
            print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated bank sizes")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=4096)
    p.add_argument("-k", type=int, default=16)
    p.add_argument("--clusters", type=int, default=1024, help="mixture components (kinds of footage)")
    p.add_argument("--methods", default="torch,ivf,hnsw", help="besides faiss flat, always run")
    p.add_argument("--nprobe", default="4,16,64", help="IVF settings to sweep (comma-separated)")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default: about 4 sqrt(n))")
    p.add_argument(
        "--ivf-train-points", type=int, default=None, help="k-means sample (default: all, capped by faiss)"
    )
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-search", default="16,64,128", help="HNSW settings to sweep (comma-separated)")
    p.add_argument("--hnsw-max", type=int, default=1_000_000, help="skip HNSW above this size (slow build)")
    p.add_argument(
        "--batch", type=int, default=64, help="narrated videos per training step (queries per step)"
    )
    p.add_argument(
        "--step-ms", type=float, default=333.0, help="reference training-step time for the share column"
    )
    p.add_argument("--repeat", type=int, default=5, help="repeats of the per-step timings (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/perf_bank.json"))
    args = p.parse_args(argv)
    args.methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    args.ef_search = [int(v) for v in args.ef_search.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.extend(bench_size(n, args))
        print_tables([r for r in rows if r["n"] == n])
    report = {
        "config": {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
        "versions": {
            "faiss": faiss.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        # Timings on a shared machine: the load average says how much else was running.
        "load_average_at_end": list(os.getloadavg()),
        "machine": {
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "torch_threads": torch.get_num_threads(),
        },
        "rows": rows,
    }
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
