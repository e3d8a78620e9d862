"""Linear probe: by-video subsets, and predictions equal to scikit-learn fit directly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import StandardScaler

from ophclip.errors import DataError
from ophclip.eval.config import ProbeOptions
from ophclip.eval.probe import FeatureSet, linear_probe, pick_videos
from ophclip.eval.report import probe_markdown


def clustered_features(n_videos: int, frames: int, n_classes: int, seed: int, prefix: str) -> FeatureSet:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(n_classes, 8)) * 3
    xs, ys, vs = [], [], []
    for v in range(n_videos):
        y = rng.integers(0, n_classes, size=frames)
        xs.append(centers[y] + rng.normal(size=(frames, 8)))
        ys.append(y)
        vs.append(np.full(frames, f"{prefix}{v}", dtype=object))
    return FeatureSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(vs))


def test_pick_videos_draws_whole_videos():
    ids = [f"v{i}" for i in range(40)] * 3  # repeated per frame
    assert len(pick_videos(ids, 0.01, 0)) == 1  # at least one video
    assert len(pick_videos(ids, 0.1, 0)) == 4
    assert pick_videos(ids, 1.0, 5) == sorted(set(ids))
    assert pick_videos(ids, 0.1, 1) != pick_videos(ids, 0.1, 2)
    with pytest.raises(ValueError):
        pick_videos(ids, 0.0, 0)


def test_probe_matches_sklearn_fit_on_the_same_videos():
    train = clustered_features(20, 30, 3, seed=1, prefix="tr")
    test = clustered_features(5, 30, 3, seed=2, prefix="te")
    train.y[:5] = -1  # unlabelled frames are dropped
    out = linear_probe(train, test, ProbeOptions(fractions=[0.1, 1.0], seeds=[0, 1]))
    for frac in (0.1, 1.0):
        for run in out["fractions"][f"{frac:g}"]["runs"]:
            chosen = pick_videos(train.video_ids[train.y >= 0], frac, run["seed"])
            m = np.isin(train.video_ids, chosen) & (train.y >= 0)
            scaler = StandardScaler().fit(train.X[m])
            ref = LogisticRegression(max_iter=1000).fit(scaler.transform(train.X[m]), train.y[m])
            pred = ref.predict(scaler.transform(test.X))
            assert run["pooled_accuracy"] == pytest.approx(accuracy_score(test.y, pred))
            assert run["n_videos"] == len(chosen) and run["n_frames"] == m.sum()
    full = out["fractions"]["1"]
    assert full["pooled_accuracy"]["mean"] > 0.9  # well-separated clusters
    assert full["pooled_accuracy"]["std"] == pytest.approx(0.0)
    assert "100% (20)" in probe_markdown(out)


def test_one_class_subset_predicts_that_class():
    train = FeatureSet(np.zeros((4, 2)), np.array([2, 2, 2, 2]), np.array(["a"] * 4, dtype=object))
    test = FeatureSet(np.ones((3, 2)), np.array([2, 1, 2]), np.array(["b"] * 3, dtype=object))
    out = linear_probe(train, test, ProbeOptions(fractions=[1.0], seeds=[0]))
    assert out["fractions"]["1"]["pooled_accuracy"]["mean"] == pytest.approx(2 / 3)


def test_overlapping_videos_are_refused():
    fs = clustered_features(2, 5, 2, seed=0, prefix="v")
    with pytest.raises(DataError, match="both the probe's training and test"):
        linear_probe(fs, fs)


@pytest.mark.slow
def test_probe_command_on_the_synthetic_set(synth_tiny_dir, tmp_path):
    import json

    import pandas as pd

    from ophclip.config import load_config
    from ophclip.eval.config import ProbeConfig
    from ophclip.eval.run import run_probe

    cfg = load_config(ProbeConfig, "configs/eval_probe_synthetic.yaml",
                      [f"benchmark.root={synth_tiny_dir}", f"out={tmp_path}", "eval.fps=0.5", "probe.seeds=[0, 1]"])
    result = run_probe(cfg, progress=False)
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv")
    assert result["n_test_videos"] == (meta.split == "eval").sum()
    assert result["n_train_videos"] == (meta.split == "narrated_pretrain").sum()
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert set(saved["fractions"]) == {"0.01", "0.1", "1"}
    assert all(len(v["runs"]) == 2 for v in saved["fractions"].values())
    assert (tmp_path / "probe.md").is_file() and (tmp_path / "config.yaml").is_file()


def test_knn_votes_match_a_brute_force_neighbour_count():
    from ophclip.eval.probe import FeatureSet, knn_predict

    rng = np.random.default_rng(0)
    train = FeatureSet(rng.normal(size=(60, 5)), rng.integers(0, 3, 60) * 2 + 1, np.array([f"v{i % 6}" for i in range(60)]))
    X = rng.normal(size=(25, 5))
    k = 7
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = []
    for x in unit(X):
        order = np.argsort(-(unit(train.X) @ x))[:k]
        labels, counts = np.unique(train.y[order], return_counts=True)
        expected.append(labels[np.argmax(counts)])  # ties go to the smallest label, as bincount's argmax
    assert np.array_equal(knn_predict(train, X, k, batch=8), np.array(expected))
