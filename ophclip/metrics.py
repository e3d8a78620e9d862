"""Evaluation metrics, computed with scikit-learn (not re-implemented here).

Phase recognition reports two protocols side by side, because papers use both:

* **per video, then averaged** (the peers' protocol, e.g. SurgVLP/OphCLIP tables):
  accuracy and macro-F1 of each video, then the mean (and std) over videos. A
  video's macro-F1 averages over the classes present in its ground truth or its
  prediction (scikit-learn's default label set), with F1 = 0 for a class predicted
  but absent, so a confident wrong class costs F1.
* **pooled over frames**: every scored frame of every video together.

Frames labelled ``-1`` are not scored. Confidence intervals are percentile
bootstrap 95% intervals that resample *videos* with replacement (frames of one
video are not independent), :func:`bootstrap_by_video`.

Tools (multi-label): per-tool average precision (``average_precision_score``),
mAP over tools that have at least one positive frame, and the false-positive rate
FP / (FP + TN) at a fixed score threshold (0.5 by default: the calibrated
present-vs-absent score of :func:`ophclip.zero_shot.tool_scores` is a probability).
Tool targets of ``-1`` are left out.

Retrieval: Recall@K is ``top_k_accuracy_score`` with each query's one true match.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    top_k_accuracy_score,
)

logger = logging.getLogger(__name__)

DEFAULT_TOOL_THRESHOLD = 0.5


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def phase_metrics(y_true: np.ndarray, y_pred: np.ndarray, video_ids: Sequence[str] | np.ndarray) -> dict:
    """Accuracy and macro-F1, per video (mean, std) and pooled; per-video values included."""
    y_true, y_pred, video_ids = np.asarray(y_true), np.asarray(y_pred), np.asarray(video_ids)
    scored = y_true >= 0
    y_true, y_pred, video_ids = y_true[scored], y_pred[scored], video_ids[scored]
    if y_true.size == 0:
        raise ValueError("no scored frames (every label is -1)")
    per_video = {}
    for vid in dict.fromkeys(video_ids.tolist()):
        m = video_ids == vid
        per_video[str(vid)] = {
            "accuracy": float(accuracy_score(y_true[m], y_pred[m])),
            "f1": _macro_f1(y_true[m], y_pred[m]),
            "n_frames": int(m.sum()),
        }
    acc = np.array([v["accuracy"] for v in per_video.values()])
    f1 = np.array([v["f1"] for v in per_video.values()])
    return {
        "video_accuracy": float(acc.mean()),
        "video_accuracy_std": float(acc.std()),
        "video_f1": float(f1.mean()),
        "video_f1_std": float(f1.std()),
        "pooled_accuracy": float(accuracy_score(y_true, y_pred)),
        "pooled_f1": _macro_f1(y_true, y_pred),
        "n_videos": len(per_video),
        "n_frames": int(y_true.size),
        "per_video": per_video,
    }


def bootstrap_by_video(
    statistic: Callable[[np.ndarray], float],
    video_ids: Sequence[str] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(row_indices)`` over bootstrap resamples of videos.

    Each resample draws as many videos as there are, with replacement, and passes
    the rows of the drawn videos (a video drawn twice contributes its rows twice).
    """
    video_ids = np.asarray(video_ids)
    groups = [np.nonzero(video_ids == v)[0] for v in dict.fromkeys(video_ids.tolist())]
    if not groups:
        raise ValueError("no videos to resample")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(groups), size=len(groups))
        values[b] = statistic(np.concatenate([groups[i] for i in pick]))
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def phase_metrics_with_ci(
    y_true: np.ndarray, y_pred: np.ndarray, video_ids: Sequence[str] | np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict:
    """:func:`phase_metrics` plus ``<metric>_ci`` = [low, high] for the four headline numbers."""
    y_true, y_pred, video_ids = np.asarray(y_true), np.asarray(y_pred), np.asarray(video_ids)
    scored = y_true >= 0
    y_true, y_pred, video_ids = y_true[scored], y_pred[scored], video_ids[scored]
    out = phase_metrics(y_true, y_pred, video_ids)
    if n_boot <= 0:
        return out
    order = list(out["per_video"])
    acc = np.array([out["per_video"][v]["accuracy"] for v in order])
    f1 = np.array([out["per_video"][v]["f1"] for v in order])
    ids = np.array(order)
    # Video-averaged metrics resample the per-video values; pooled ones re-score the drawn frames.
    out["video_accuracy_ci"] = list(bootstrap_by_video(lambda i: acc[i].mean(), ids, n_boot, seed))
    out["video_f1_ci"] = list(bootstrap_by_video(lambda i: f1[i].mean(), ids, n_boot, seed))
    out["pooled_accuracy_ci"] = list(
        bootstrap_by_video(lambda i: accuracy_score(y_true[i], y_pred[i]), video_ids, n_boot, seed)
    )
    out["pooled_f1_ci"] = list(bootstrap_by_video(lambda i: _macro_f1(y_true[i], y_pred[i]), video_ids, n_boot, seed))
    return out


def tool_metrics(
    targets: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    threshold: float = DEFAULT_TOOL_THRESHOLD,
) -> dict:
    """Per-tool AP and FPR at ``threshold``; mAP over tools with a positive frame; pooled FPR."""
    targets, scores = np.asarray(targets), np.asarray(scores, dtype=np.float64)
    if targets.shape != scores.shape:
        raise ValueError(f"targets {targets.shape} and scores {scores.shape} differ in shape")
    per_tool = {}
    fp_total = tn_total = 0
    for k, name in enumerate(class_names):
        valid = targets[:, k] >= 0
        t, s = targets[valid, k].astype(int), scores[valid, k]
        n_pos = int(t.sum())
        ap = float(average_precision_score(t, s)) if n_pos > 0 else float("nan")
        tn, fp, _, _ = confusion_matrix(t, (s >= threshold).astype(int), labels=[0, 1]).ravel()
        fp_total += int(fp)
        tn_total += int(tn)
        per_tool[name] = {
            "ap": ap,
            "fpr": float(fp / (fp + tn)) if fp + tn > 0 else float("nan"),
            "n_positive": n_pos,
            "n_scored": int(valid.sum()),
        }
    aps = [v["ap"] for v in per_tool.values() if not np.isnan(v["ap"])]
    return {
        "mAP": float(np.mean(aps)) if aps else float("nan"),
        "fpr": float(fp_total / (fp_total + tn_total)) if fp_total + tn_total > 0 else float("nan"),
        "threshold": threshold,
        "n_tools_scored": len(aps),
        "per_tool": per_tool,
    }


def video_classification_metrics(targets: np.ndarray, scores: np.ndarray, multi_label: bool) -> dict:
    """Surgery type per video. Single-label: accuracy and macro-F1 of the argmax.

    Multi-label: mAP over classes with a positive video, and top-1 accuracy (the
    best-scored class is one of the video's labels).
    """
    targets, scores = np.asarray(targets), np.asarray(scores)
    pred = scores.argmax(axis=1)
    if not multi_label:
        truth = targets.argmax(axis=1)
        return {"accuracy": float(accuracy_score(truth, pred)), "f1": _macro_f1(truth, pred), "n_videos": len(truth)}
    has_pos = targets.sum(axis=0) > 0
    ap = average_precision_score(targets[:, has_pos], scores[:, has_pos], average="macro")
    top1 = float(np.mean(targets[np.arange(len(pred)), pred] == 1))
    return {"mAP": float(ap), "top1_accuracy": top1, "n_videos": len(targets)}


def retrieval_recall(similarity: np.ndarray, true_index: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Recall@K of queries (rows) against a gallery (columns); ``true_index[q]`` is query q's match."""
    similarity, true_index = np.asarray(similarity, dtype=np.float64), np.asarray(true_index)
    n_gallery = similarity.shape[1]
    if n_gallery == 2:
        # scikit-learn reads two columns as a binary problem; a never-ranked third column keeps it multiclass.
        similarity = np.concatenate([similarity, np.full((len(similarity), 1), similarity.min() - 1.0)], axis=1)
    out = {}
    for k in ks:
        if k >= n_gallery:
            out[f"R@{k}"] = 1.0  # every item is within the top k of a gallery this small
            continue
        labels = np.arange(similarity.shape[1])
        out[f"R@{k}"] = float(top_k_accuracy_score(true_index, similarity, k=k, labels=labels))
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts over scored frames (rows: truth, columns: prediction)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scored = y_true >= 0
    return confusion_matrix(y_true[scored], y_pred[scored], labels=np.arange(n_classes))
