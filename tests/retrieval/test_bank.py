"""MemoryBank against brute-force numpy: exact search, update/remove, persistence, errors, atomic swap."""

from __future__ import annotations

import threading
import time

import faiss
import numpy as np
import pytest
import torch

from benchmarks.perf_bank import clustered_embeddings
from retrieval import BankHolder, MemoryBank, MemoryBankError

DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(queries: np.ndarray, ids: list[str], vectors: np.ndarray, k: int, drop=None):
    """Reference top-k by cosine in float64, optionally dropping (query_index, id) -> bool pairs."""
    sims = unit(queries.astype(np.float64)) @ unit(vectors.astype(np.float64)).T
    out_ids, out_scores = [], []
    for i, row in enumerate(sims):
        order = np.argsort(-row, kind="stable")
        kept = [j for j in order if drop is None or not drop(i, ids[j], row[j])][:k]
        out_ids.append([ids[j] for j in kept])
        out_scores.append(row[kept])
    return out_ids, out_scores


def random_data(n: int, seed: int = 0, dim: int = DIM) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    # Not unit length on purpose: the bank must normalise.
    return [f"vid{i:05d}" for i in range(n)], (
        rng.standard_normal((n, dim)) * rng.uniform(0.5, 3, (n, 1))
    ).astype(np.float32)


def assert_matches(result, ref_ids, ref_scores, atol=1e-5):
    for i, (ri, rs) in enumerate(zip(ref_ids, ref_scores, strict=True)):
        got = [v for v in result.ids[i] if v is not None]
        assert got == ri, f"query {i}"
        np.testing.assert_allclose(result.scores[i, : len(rs)], rs, atol=atol)


def test_flat_search_equals_brute_force_numpy_and_torch():
    ids, x = random_data(2000)
    q = np.random.default_rng(1).standard_normal((50, DIM)).astype(np.float32)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    ref_ids, ref_scores = brute_force(q, ids, x, 16)
    assert_matches(bank.search(q, 16), ref_ids, ref_scores)
    assert_matches(bank.search(torch.from_numpy(q).double(), 16), ref_ids, ref_scores)
    bank2 = MemoryBank(DIM)
    bank2.add(ids, torch.from_numpy(x))
    assert_matches(bank2.search(q, 16), ref_ids, ref_scores)


def test_vectors_are_stored_normalised():
    ids, x = random_data(10)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    np.testing.assert_allclose(bank.get_vectors(ids[3:6]), unit(x[3:6]), atol=1e-6)
    assert len(bank) == 10 and ids[4] in bank and "nope" not in bank and bank.ids == ids


def test_k_larger_than_bank_pads_with_none():
    ids, x = random_data(3)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    res = bank.search(x[:2], 5)
    assert res.ids.shape == (2, 5)
    assert all(v is None for v in res.ids[:, 3:].ravel())
    assert np.isneginf(res.scores[:, 3:]).all()
    assert res.ids[0, 0] == ids[0] and res.ids[1, 0] == ids[1]
    empty = MemoryBank(DIM).search(x[:1], 2)
    assert empty.ids.tolist() == [[None, None]]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_update_and_remove_keep_ids_stable(kind):
    ids, x = random_data(1200, seed=2)
    params = {"nlist": 8, "nprobe": 8} if kind == "ivf" else {"ef_search": 400} if kind == "hnsw" else {}
    bank = MemoryBank(DIM, kind, **params)
    bank.add(ids, x)
    labels_before = {v: bank.label_of(v) for v in ids}
    rng = np.random.default_rng(3)
    upd = rng.choice(len(ids), 100, replace=False)
    new_vectors = rng.standard_normal((100, DIM)).astype(np.float32)
    bank.update([ids[i] for i in upd], new_vectors)
    x_ref = x.copy()
    x_ref[upd] = new_vectors
    gone = [ids[i] for i in rng.choice(np.setdiff1d(np.arange(len(ids)), upd), 50, replace=False)]
    bank.remove(gone)
    remaining = [v for v in ids if v not in set(gone)]
    x_rem = x_ref[[i for i, v in enumerate(ids) if v not in set(gone)]]
    assert len(bank) == len(remaining) and set(bank.ids) == set(remaining)
    assert all(bank.label_of(v) == labels_before[v] for v in remaining)
    np.testing.assert_allclose(bank.get_vectors([ids[i] for i in upd[:5]]), unit(new_vectors[:5]), atol=1e-6)
    # Updates after removals (positions have shifted) still hit the right rows.
    again = rng.choice(len(remaining), 40, replace=False)
    again_vectors = rng.standard_normal((40, DIM)).astype(np.float32)
    bank.update([remaining[i] for i in again], again_vectors)
    x_rem[again] = again_vectors
    np.testing.assert_allclose(bank.get_vectors(remaining), unit(x_rem), atol=1e-6)
    # A new id after removals gets a fresh label, never a reused one.
    fresh = rng.standard_normal((1, DIM)).astype(np.float32)
    bank.add("fresh", fresh)
    assert bank.label_of("fresh") == len(ids)
    q = np.concatenate([unit(new_vectors[:10]), fresh, rng.standard_normal((20, DIM)).astype(np.float32)])
    ref_ids, ref_scores = brute_force(q, remaining + ["fresh"], np.concatenate([x_rem, fresh]), 10)
    res = bank.search(q, 10)
    assert not set(gone) & set(res.ids.ravel())
    if kind == "hnsw":  # approximate: near-perfect recall on 1.2k points with ef_search=400
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids.tolist(), ref_ids, strict=True)])
        assert recall >= 0.97
    else:  # flat, and IVF probing every list, are exact
        assert_matches(res, ref_ids, ref_scores)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip_is_exact(tmp_path, kind):
    ids, x = random_data(800, seed=4)
    params = {"nlist": 10, "nprobe": 3} if kind == "ivf" else {}
    bank = MemoryBank(DIM, kind, **params)
    bank.add(ids, x)
    bank.remove(ids[10:20])
    bank.update(ids[:5], x[100:105])
    q = np.random.default_rng(5).standard_normal((40, DIM)).astype(np.float32)
    before = bank.search(q, 8)
    bank.save(tmp_path / "bank")
    loaded = MemoryBank.load(tmp_path / "bank")
    assert loaded.kind == kind and loaded.dim == DIM and loaded.ids == bank.ids
    assert all(loaded.label_of(v) == bank.label_of(v) for v in bank.ids)
    after = loaded.search(q, 8)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.scores, before.scores)
    np.testing.assert_array_equal(loaded.get_vectors(bank.ids), bank.get_vectors(bank.ids))
    # The loaded bank is fully usable: labels continue, updates and removes work.
    loaded.add("new", x[0])
    assert loaded.label_of("new") == 800
    loaded.update(ids[30], x[31])
    loaded.remove(ids[40])
    np.testing.assert_allclose(loaded.get_vectors(ids[30]), unit(x[31:32]), atol=1e-6)


def test_save_replaces_old_generation_and_survives_a_failed_save(tmp_path, monkeypatch):
    ids, x = random_data(50)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    bank.save(tmp_path)
    bank.remove(ids[:10])
    bank.save(tmp_path)
    assert len(list(tmp_path.glob("index-*.faiss"))) == 1 and len(list(tmp_path.glob("ids-*.parquet"))) == 1
    assert len(MemoryBank.load(tmp_path)) == 40

    def crash(*args):
        raise RuntimeError("disk full")

    bank.remove(ids[10:20])
    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        bank.save(tmp_path)
    assert len(MemoryBank.load(tmp_path)) == 40  # the last complete save is intact
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_missing_and_inconsistent_folders(tmp_path):
    with pytest.raises(MemoryBankError, match="bank.json not found: .* is not a memory bank folder"):
        MemoryBank.load(tmp_path)
    ids, x = random_data(20)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    bank.save(tmp_path)
    other = MemoryBank(DIM)
    other.add(ids[:5], x[:5])
    # Overwrite the index with a smaller one: the id table no longer matches.
    faiss.write_index(other._kind.cpu_index(), str(next(tmp_path.glob("index-*.faiss"))))
    with pytest.raises(MemoryBankError, match="inconsistent"):
        MemoryBank.load(tmp_path)


def test_bad_input_errors_name_the_problem():
    ids, x = random_data(5)
    bank = MemoryBank(DIM)
    with pytest.raises(MemoryBankError, match=r"expected shape \(n, 32\)"):
        bank.add(ids, x[:, :16])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(MemoryBankError, match="row 3 holds NaN or inf"):
        bank.add(ids, bad)
    bad[3, 2] = np.inf
    with pytest.raises(MemoryBankError, match="row 3"):
        bank.add(ids, bad)
    with pytest.raises(MemoryBankError, match="zero vector"):
        bank.add(ids[:1], np.zeros((1, DIM), np.float32))
    with pytest.raises(MemoryBankError, match="'vid00001' appears more than once"):
        bank.add([ids[0], ids[1], ids[1]], x[:3])
    with pytest.raises(MemoryBankError, match="3 ids but 5 vectors"):
        bank.add(ids[:3], x)
    with pytest.raises(MemoryBankError, match="must be strings"):
        bank.add([1, 2], x[:2])
    assert len(bank) == 0  # nothing half-added
    bank.add(ids, x)
    with pytest.raises(MemoryBankError, match="already in the bank.*'vid00002'"):
        bank.add(ids[2:3], x[:1])
    with pytest.raises(MemoryBankError, match="update: 1 id.*'ghost'"):
        bank.update(["ghost"], x[:1])
    with pytest.raises(MemoryBankError, match="remove: 1 id.*'ghost'"):
        bank.remove(["ghost", ids[0]])
    assert len(bank) == 5  # a failed remove removes nothing
    with pytest.raises(MemoryBankError, match="k must be a positive int"):
        bank.search(x, 0)
    with pytest.raises(MemoryBankError, match="exclude has 1 entries for 5 queries"):
        bank.search(x, 2, exclude=[["a"]])
    with pytest.raises(MemoryBankError, match="unknown index kind 'annoy'"):
        MemoryBank(DIM, "annoy")
    with pytest.raises(MemoryBankError, match="needs at least 50 vectors"):
        MemoryBank(DIM, "ivf", nlist=50).add(ids, x)


def test_upsert_adds_new_and_updates_known():
    ids, x = random_data(6)
    bank = MemoryBank(DIM)
    bank.add(ids[:4], x[:4])
    label = bank.label_of(ids[1])
    bank.upsert([ids[1], ids[5]], x[[0, 5]])
    assert len(bank) == 5 and bank.label_of(ids[1]) == label
    np.testing.assert_allclose(bank.get_vectors([ids[1], ids[5]]), unit(x[[0, 5]]), atol=1e-6)


def test_exclude_self_matches_and_near_duplicates():
    ids, x = random_data(300, seed=6)
    bank = MemoryBank(DIM)
    bank.add(ids, x)
    rng = np.random.default_rng(7)
    # Queries: bank members themselves plus a near-copy of another member.
    q = np.concatenate([x[:5], x[5:6] + 1e-3 * rng.standard_normal((1, DIM)).astype(np.float32)])
    query_ids = ids[:5] + ["narrated_q"]
    exclude = [[v] for v in query_ids]
    res = bank.search(q, 7, exclude=exclude, max_score=0.99)

    def drop(i, vid, score):
        return vid == query_ids[i] or score > 0.99

    ref_ids, ref_scores = brute_force(q, ids, x, 7, drop=drop)
    assert_matches(res, ref_ids, ref_scores)
    assert ids[5] not in res.ids[5]  # the near-duplicate is gone
    # Many exclusions for one query force a second, deeper fetch.
    res = bank.search(q[:1], 5, exclude=[ids[1:250]])
    ref_ids, ref_scores = brute_force(q[:1], ids, x, 5, drop=lambda i, v, s: v in set(ids[1:250]))
    assert_matches(res, ref_ids, ref_scores)


def test_holder_swap_is_atomic_for_concurrent_searches():
    """A thread searches while banks are swapped: every result comes wholly from one bank."""
    rng = np.random.default_rng(8)
    banks, refs = [], []
    q = rng.standard_normal((64, DIM)).astype(np.float32)
    for name in "ab":
        ids = [f"{name}{i}" for i in range(3000)]
        x = rng.standard_normal((3000, DIM)).astype(np.float32)
        bank = MemoryBank(DIM)
        bank.add(ids, x)
        banks.append(bank)
        refs.append(brute_force(q, ids, x, 8)[0])
    holder = BankHolder(banks[0])
    stop = threading.Event()
    seen, failures, searches = set(), [], []

    def searcher():
        while not stop.is_set():
            res = holder.search(q, 8)
            searches.append(1)
            prefixes = {v[0] for v in res.ids.ravel()}
            if len(prefixes) != 1:
                failures.append(prefixes)
                continue
            (p,) = prefixes
            seen.add(p)
            if res.ids.tolist() != refs["ab".index(p)]:
                failures.append(p)

    t = threading.Thread(target=searcher)
    t.start()
    swaps, deadline = 0, time.monotonic() + 20
    while (len(searches) < 100 or len(seen) < 2) and time.monotonic() < deadline:
        swaps += 1
        holder.swap(banks[swaps % 2])
    stop.set()
    t.join()
    assert not failures
    assert seen == {"a", "b"} and len(searches) >= 100
    assert holder.generation == swaps + 1


def test_in_place_update_is_atomic_for_concurrent_searches():
    """Updating every vector while another thread searches: results are all-old or all-new."""
    rng = np.random.default_rng(9)
    ids = [f"v{i}" for i in range(4000)]
    old, new = (rng.standard_normal((4000, DIM)).astype(np.float32) for _ in range(2))
    q = rng.standard_normal((32, DIM)).astype(np.float32)
    ref = [brute_force(q, ids, v, 8)[0] for v in (old, new)]
    bank = MemoryBank(DIM)
    bank.add(ids, old)
    stop, failures, states, searches = threading.Event(), [], set(), []

    def searcher():
        while not stop.is_set():
            got = bank.search(q, 8).ids.tolist()
            searches.append(1)
            if got in ref:
                states.add(ref.index(got))
            else:
                failures.append(got)

    t = threading.Thread(target=searcher)
    t.start()
    updates, deadline = 0, time.monotonic() + 20
    while (len(searches) < 50 or len(states) < 2) and time.monotonic() < deadline:
        bank.update(ids, new if updates % 2 == 0 else old)
        updates += 1
    stop.set()
    t.join()
    assert not failures
    assert states == {0, 1} and len(searches) >= 50


def test_ivf_and_hnsw_recall_against_flat_on_clustered_data():
    x, centers = clustered_embeddings(10000, 48, n_clusters=64, seed=10)
    q, _ = clustered_embeddings(200, 48, centers=centers, seed=11)
    ids = [str(i) for i in range(len(x))]
    exact = MemoryBank(48)
    exact.add(ids, x)
    truth = exact.search(q, 16).ids
    # Independent check of the reference itself.
    assert truth[:, 0].tolist() == [str(i) for i in np.argmax(q @ x.T, axis=1)]

    def recall(bank) -> float:
        got = bank.search(q, 16).ids
        return np.mean([len(set(a) & set(b)) / 16 for a, b in zip(got.tolist(), truth.tolist(), strict=True)])

    ivf = MemoryBank(48, "ivf")
    ivf.add(ids, x)
    by_nprobe = {}
    for nprobe in (2, 32, ivf._kind.nlist):
        ivf.set_search_params(nprobe=nprobe)
        by_nprobe[nprobe] = recall(ivf)
    assert by_nprobe[2] < by_nprobe[32] and by_nprobe[32] >= 0.95, by_nprobe
    assert by_nprobe[ivf._kind.nlist] == 1.0  # probing every list is exact
    hnsw = MemoryBank(48, "hnsw", m=16, ef_construction=40)
    hnsw.add(ids, x)
    by_ef = {}
    for ef in (16, 128):
        hnsw.set_search_params(ef_search=ef)
        by_ef[ef] = recall(hnsw)
    assert by_ef[16] <= by_ef[128] and by_ef[128] >= 0.95, by_ef


def test_ivf_trains_on_a_sample_when_asked(tmp_path):
    ids, x = random_data(3000, seed=12)
    bank = MemoryBank(DIM, "ivf", nlist=20, nprobe=20, train_points=400)
    bank.add(ids, x)
    q = np.random.default_rng(13).standard_normal((10, DIM)).astype(np.float32)
    ref_ids, ref_scores = brute_force(q, ids, x, 5)
    assert_matches(bank.search(q, 5), ref_ids, ref_scores)  # every list probed: exact
    bank.save(tmp_path)
    assert MemoryBank.load(tmp_path)._kind.params() == {"nlist": 20, "nprobe": 20, "train_points": 400}
