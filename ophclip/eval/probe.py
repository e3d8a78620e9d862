"""Linear probe on frozen frame features, few-shot *by video*.

For each fraction of the training videos (1%, 10%, 100% by default) and each seed,
a random subset of whole videos is drawn (at least one video; frames of one video
are never split, because neighbouring frames are near copies and would leak), a
scikit-learn ``LogisticRegression`` is fit on their frames' features, and the
held-out videos are scored with :func:`ophclip.metrics.phase_metrics`. Results are
mean ± std over seeds. At 100% every seed draws the same videos, so the std only
reflects the solver (zero for lbfgs).

Features are standardised with the training subset's statistics (a
``StandardScaler`` in the pipeline) so that one ``C`` suits any model's scale.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ConfigError, DataError
from ..metrics import phase_metrics
from .config import ProbeOptions

logger = logging.getLogger(__name__)

HEADLINE = ("video_accuracy", "video_f1", "pooled_accuracy", "pooled_f1")


@dataclass
class FeatureSet:
    """Frame features of some videos: X (N, D), labels y (N,), video id per row; -1 labels are dropped."""

    X: np.ndarray
    y: np.ndarray
    video_ids: np.ndarray

    @classmethod
    def from_embeddings(cls, emb, labels) -> FeatureSet:
        """From :class:`ophclip.eval.embed.VideoEmbeddings` and phase labels (``labels.labels[vid]``)."""
        xs, ys, vs = [], [], []
        for vid, x in emb.frames.items():
            y = labels.labels[vid][emb.frame_index[vid]]
            xs.append(x)
            ys.append(y)
            vs.append(np.full(len(y), vid, dtype=object))
        return cls(np.concatenate(xs), np.concatenate(ys), np.concatenate(vs))

    def scored(self) -> FeatureSet:
        keep = self.y >= 0
        return FeatureSet(self.X[keep], self.y[keep], self.video_ids[keep])


def pick_videos(video_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """``max(1, round(fraction * n))`` distinct videos, drawn with ``seed``."""
    unique = sorted(set(video_ids))
    if not 0 < fraction <= 1:
        raise ConfigError(f"probe fraction {fraction} must be in (0, 1]")
    n = min(len(unique), max(1, round(fraction * len(unique))))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(unique, size=n, replace=False).tolist())


def fit_probe(train: FeatureSet, C: float = 1.0, max_iter: int = 1000):
    """A fitted classifier (scaler + logistic regression); a constant one if the subset has one class."""
    classes = np.unique(train.y)
    if classes.size == 1:
        return DummyClassifier(strategy="most_frequent").fit(train.X, train.y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(train.X, train.y)


def linear_probe(train: FeatureSet, test: FeatureSet, opts: ProbeOptions | None = None) -> dict:
    """Few-shot-by-video linear probe; returns per fraction the per-seed metrics and mean/std."""
    opts = opts or ProbeOptions()
    train, test = train.scored(), test.scored()
    if len(train.y) == 0 or len(test.y) == 0:
        raise DataError("linear probe needs labelled frames in both the training and the test videos")
    overlap = set(train.video_ids) & set(test.video_ids)
    if overlap:
        raise DataError(f"videos {sorted(overlap)[:5]} are in both the probe's training and test sets")
    out: dict = {"n_train_videos": len(set(train.video_ids)), "n_test_videos": len(set(test.video_ids)), "fractions": {}}
    for fraction in opts.fractions:
        runs = []
        for seed in opts.seeds:
            chosen = pick_videos(train.video_ids, fraction, seed)
            mask = np.isin(train.video_ids, chosen)
            clf = fit_probe(FeatureSet(train.X[mask], train.y[mask], train.video_ids[mask]), opts.C, opts.max_iter)
            m = phase_metrics(test.y, clf.predict(test.X), test.video_ids)
            runs.append({"seed": seed, "n_videos": len(chosen), "n_frames": int(mask.sum()),
                         **{k: m[k] for k in HEADLINE}})
        summary = {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
                   for k in HEADLINE}
        out["fractions"][f"{fraction:g}"] = {"runs": runs, **summary}
        logger.info("probe %g of videos: accuracy %.3f ± %.3f", fraction, summary["video_accuracy"]["mean"],
                    summary["video_accuracy"]["std"])
    if opts.knn_k > 0:
        m = phase_metrics(test.y, knn_predict(train, test.X, opts.knn_k), test.video_ids)
        out["knn"] = {"k": opts.knn_k, **{k: m[k] for k in HEADLINE}}
    return out


def knn_predict(train: FeatureSet, X: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Majority vote of the ``k`` most cosine-similar training frames (DINO's kNN protocol, unweighted)."""
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    bank, k = unit(train.X.astype(np.float32)), min(k, len(train.y))
    classes, y = np.unique(train.y, return_inverse=True)
    out = []
    for lo in range(0, len(X), batch):
        sims = unit(X[lo : lo + batch].astype(np.float32)) @ bank.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        votes = np.apply_along_axis(np.bincount, 1, y[nearest], minlength=len(classes))
        out.append(classes[votes.argmax(1)])
    return np.concatenate(out)
