"""The memory-bank benchmark runs end to end at a tiny size, and its helpers are right."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.perf_bank import clustered_embeddings, main, recall_at_k, torch_topk


def test_torch_topk_matches_numpy_across_chunks():
    rng = np.random.default_rng(0)
    db = rng.standard_normal((1000, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    scores, idx = torch_topk(q, db, 5, db_chunk=128)  # 8 chunks: the merge across chunks matters
    ref = np.argsort(-(q @ db.T), axis=1)[:, :5]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ db.T, ref, 1), rtol=1e-5)


def test_recall_and_generator():
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [3, 4]])) == 0.75
    x, centers = clustered_embeddings(500, 32, n_clusters=16, seed=1)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # Every point is closer to some centre than random directions are (clustered, not isotropic).
    assert (x @ centers.T).max(axis=1).mean() > 0.5


def test_main_writes_tables_and_json(tmp_path, capsys):
    out = tmp_path / "perf.json"
    report = main(
        [
            "--sizes",
            "3000",
            "--dim",
            "32",
            "--queries",
            "64",
            "--batch",
            "8",
            "--clusters",
            "32",
            "--nprobe",
            "4,64",
            "--ef-search",
            "32",
            "--repeat",
            "1",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert "faiss flat" in text and "torch matmul+topk" in text and "refresh" in text
    saved = json.loads(out.read_text())
    assert saved["rows"] == report["rows"]
    search = {(r["method"], r["setting"]): r for r in saved["rows"] if r["table"] == "search"}
    assert search[("torch matmul+topk", "exact")]["recall@16"] == 1.0  # two exact methods agree
    assert search[("ivf", "nlist=76, nprobe=64")]["recall@16"] == 1.0  # probing every list is exact
    assert {r["method"] for r in saved["rows"] if r["table"] == "refresh"} == {"faiss flat", "ivf", "hnsw"}
