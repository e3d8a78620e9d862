"""Metrics against reference formulas and brute force (not the library's own code paths)."""

from __future__ import annotations

import numpy as np
import pytest

from ophclip import metrics as M


def f1_by_formula(t: np.ndarray, p: np.ndarray) -> float:
    """Macro-F1 over the classes present in truth or prediction: 2TP / (2TP + FP + FN) per class."""
    scores = []
    for c in sorted(set(t.tolist()) | set(p.tolist())):
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def ap_by_brute_force(t: np.ndarray, s: np.ndarray) -> float:
    """AP = mean over positives of the precision among items scored >= that positive (ties count together)."""
    precisions = []
    for i in np.nonzero(t == 1)[0]:
        above = s >= s[i]
        precisions.append(t[above].sum() / above.sum())
    return float(np.mean(precisions))


@pytest.fixture
def phase_data():
    rng = np.random.default_rng(3)
    vids = np.repeat(["a", "b", "c", "d"], [30, 50, 20, 40])
    t = rng.integers(0, 5, size=len(vids))
    p = np.where(rng.random(len(vids)) < 0.6, t, rng.integers(0, 5, size=len(vids)))
    t[[3, 70]] = -1  # unlabelled frames are not scored
    return t, p, vids


def test_phase_metrics_per_video_and_pooled(phase_data):
    t, p, vids = phase_data
    out = M.phase_metrics(t, p, vids)
    keep = t >= 0
    accs, f1s = [], []
    for v in ["a", "b", "c", "d"]:
        m = (vids == v) & keep
        accs.append(np.mean(t[m] == p[m]))
        f1s.append(f1_by_formula(t[m], p[m]))
    assert out["video_accuracy"] == pytest.approx(np.mean(accs))
    assert out["video_f1"] == pytest.approx(np.mean(f1s))
    assert out["video_accuracy_std"] == pytest.approx(np.std(accs))
    assert out["pooled_accuracy"] == pytest.approx(np.mean(t[keep] == p[keep]))
    assert out["pooled_f1"] == pytest.approx(f1_by_formula(t[keep], p[keep]))
    assert out["n_frames"] == keep.sum() and out["n_videos"] == 4
    assert out["per_video"]["b"]["n_frames"] == 49


def test_bootstrap_matches_a_brute_force_resampling(phase_data):
    t, p, vids = phase_data
    out = M.phase_metrics_with_ci(t, p, vids, n_boot=300, seed=7)
    keep = t >= 0
    t, p, vids = t[keep], p[keep], vids[keep]
    # Reference: the same draws (numpy's generator with the same seed), pooled accuracy recomputed by hand.
    rng = np.random.default_rng(7)
    order = ["a", "b", "c", "d"]
    values = []
    for _ in range(300):
        pick = rng.integers(0, 4, size=4)
        rows = np.concatenate([np.nonzero(vids == order[i])[0] for i in pick])
        values.append(np.mean(t[rows] == p[rows]))
    assert out["pooled_accuracy_ci"] == pytest.approx(list(np.percentile(values, [2.5, 97.5])))
    lo, hi = out["video_accuracy_ci"]
    assert lo <= out["video_accuracy"] <= hi
    assert 0 <= out["pooled_f1_ci"][0] <= out["pooled_f1_ci"][1] <= 1


def test_bootstrap_of_identical_videos_is_a_point():
    vids = np.repeat(["a", "b", "c"], 10)
    t = np.tile(np.arange(10) % 3, 3)
    p = np.tile(np.array([0, 1, 2, 0, 1, 2, 0, 0, 0, 0]), 3)
    out = M.phase_metrics_with_ci(t, p, vids, n_boot=50)
    assert out["pooled_accuracy_ci"][0] == pytest.approx(out["pooled_accuracy_ci"][1])
    assert out["pooled_accuracy_ci"][0] == pytest.approx(out["pooled_accuracy"])


def test_tool_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    n, k = 200, 4
    targets = (rng.random((n, k)) < 0.3).astype(int)
    scores = np.clip(targets * 0.3 + rng.random((n, k)) * 0.8, 0, 1)
    targets[:, 3] = 0  # a tool never present: no AP, still an FPR
    targets[:10, 1] = -1  # ignored pairs
    out = M.tool_metrics(targets, scores, ["a", "b", "c", "d"], threshold=0.5)
    aps = []
    for j, name in enumerate("abcd"):
        valid = targets[:, j] >= 0
        t, s = targets[valid, j], scores[valid, j]
        neg = t == 0
        assert out["per_tool"][name]["fpr"] == pytest.approx(np.mean(s[neg] >= 0.5))
        assert out["per_tool"][name]["n_scored"] == valid.sum()
        if t.sum():
            assert out["per_tool"][name]["ap"] == pytest.approx(ap_by_brute_force(t, s))
            aps.append(ap_by_brute_force(t, s))
        else:
            assert np.isnan(out["per_tool"][name]["ap"])
    assert out["mAP"] == pytest.approx(np.mean(aps))
    valid = targets >= 0
    assert out["fpr"] == pytest.approx(np.sum((scores >= 0.5) & (targets == 0)) / np.sum(targets == 0))
    assert out["n_tools_scored"] == 3 and valid.sum() == out["per_tool"]["a"]["n_scored"] * 4 - 10


def test_retrieval_recall_against_ranks():
    rng = np.random.default_rng(1)
    for n in (2, 3, 12, 40):
        sim = rng.normal(size=(n, n))
        truth = rng.permutation(n)
        out = M.retrieval_recall(sim, truth)
        rank = np.array([(sim[q] > sim[q, truth[q]]).sum() for q in range(n)])  # 0 = first
        for k in (1, 5, 10):
            assert out[f"R@{k}"] == pytest.approx(np.mean(rank < k)), (n, k)


def test_video_classification_metrics():
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    single = M.video_classification_metrics(targets, scores, multi_label=False)
    assert single["accuracy"] == pytest.approx(0.5)
    assert single["f1"] == pytest.approx(f1_by_formula(np.array([0, 1, 2, 0]), np.array([0, 2, 2, 1])))
    multi_t = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    multi = M.video_classification_metrics(multi_t, scores, multi_label=True)
    assert multi["top1_accuracy"] == pytest.approx(0.5)
    assert multi["mAP"] == pytest.approx(np.mean([ap_by_brute_force(multi_t[:, j], scores[:, j]) for j in range(3)]))


def test_confusion_counts():
    t = np.array([0, 0, 1, 2, -1])
    p = np.array([0, 1, 1, 0, 2])
    assert M.confusion(t, p, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
