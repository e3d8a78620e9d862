"""Zero-shot scoring of each task from stored embeddings: phase, tools, surgery type, retrieval.

Each ``evaluate_*`` turns a benchmark's labels, the videos' embeddings and the prompt
classifiers (:mod:`ophclip.eval.zero_shot`) into a metrics dict (:mod:`ophclip.metrics`)
with chance levels beside every number, so a result can be read against guessing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..errors import DataError
from .config import EvalOptions
from .embed import VideoEmbeddings
from .zero_shot import (
    NEEDS_NEGATIVE_PROMPTS,
    TOOL_SCORINGS,
    encode_texts,
    phase_probabilities,
    smooth_probabilities,
    tool_scores,
    video_type_probabilities,
)


def _frame_targets(labels, emb: VideoEmbeddings, vid: str) -> np.ndarray:
    return labels.labels[vid][emb.frame_index[vid]]


def chance_levels(y_true: np.ndarray, video_ids: np.ndarray, n_classes: int, seed: int = 0) -> dict:
    """What guessing scores: uniform 1/K, always-the-majority-class, and uniform random predictions."""
    scored = y_true >= 0
    counts = np.bincount(y_true[scored], minlength=n_classes)
    rng = np.random.default_rng(seed)
    random_pred = rng.integers(0, n_classes, size=len(y_true))
    random = M.phase_metrics(y_true, random_pred, video_ids)
    return {
        "uniform_accuracy": 1.0 / n_classes,
        "majority_accuracy": float(counts.max() / max(counts.sum(), 1)),
        "random_video_accuracy": random["video_accuracy"],
        "random_video_f1": random["video_f1"],
        "random_pooled_accuracy": random["pooled_accuracy"],
        "random_pooled_f1": random["pooled_f1"],
    }


def evaluate_phases(labels, emb: VideoEmbeddings, classifier: torch.Tensor, scale: float, opts: EvalOptions):
    """Metrics dict and a per-frame predictions table for a phase benchmark."""
    rows, truth, pred, vids = [], [], [], []
    grouped = _group_masks(labels)
    pred_in_group: list[np.ndarray] = []
    for vid in emb.frames:
        probs = phase_probabilities(emb.frames[vid], classifier, scale)
        probs = smooth_probabilities(probs, opts.smoothing_window, opts.causal_smoothing)
        p = probs.argmax(axis=1)
        t = _frame_targets(labels, emb, vid)
        if grouped:
            pred_in_group.append(np.where(grouped[vid], probs, -np.inf).argmax(axis=1))
        fps = float(labels.video(vid)["fps"])
        rows.append(pd.DataFrame({"video_id": vid, "frame_index": emb.frame_index[vid],
                                  "time_s": emb.frame_index[vid] / fps, "label": t, "pred": p,
                                  "confidence": probs.max(axis=1)}))
        truth.append(t)
        pred.append(p)
        vids.append(np.full(len(t), vid, dtype=object))
    table = pd.concat(rows, ignore_index=True)
    y_true, y_pred, video_ids = np.concatenate(truth), np.concatenate(pred), np.concatenate(vids)
    if not (y_true >= 0).any():
        raise DataError(f"{labels.name}: no labelled frames among the evaluated ones")
    out = M.phase_metrics_with_ci(y_true, y_pred, video_ids, opts.n_boot, opts.seed)
    out["chance"] = chance_levels(y_true, video_ids, len(labels.class_names), opts.seed)
    out["confusion"] = M.confusion(y_true, y_pred, len(labels.class_names)).tolist()
    out["class_names"] = list(labels.class_names)
    if grouped:
        scored = y_true >= 0
        given = M.phase_metrics(y_true[scored], np.concatenate(pred_in_group)[scored], video_ids[scored])
        sizes = [int(grouped[v].sum()) for v in emb.frames]
        out["given_group"] = {
            "video_accuracy": given["video_accuracy"],
            "video_f1": given["video_f1"],
            "pooled_accuracy": given["pooled_accuracy"],
            "mean_classes": float(np.mean(sizes)),
            "chance_uniform_accuracy": float(np.mean([1.0 / n for n in sizes])),
            "note": "argmax over the classes of the video's group (its surgery type) only",
        }
    return out, table


def _group_masks(labels) -> dict[str, np.ndarray]:
    """video_id -> boolean mask of the classes its group allows; empty when the benchmark has no groups."""
    groups = getattr(labels, "group_classes", None)
    if not groups or "group" not in labels.videos:
        return {}
    index = {c: i for i, c in enumerate(labels.class_names)}
    masks = {}
    for vid, group in zip(labels.videos["video_id"], labels.videos["group"], strict=True):
        if group not in groups:
            raise DataError(f"{labels.name}: video {vid!r} has group {group!r}, which group_classes does not list")
        mask = np.zeros(len(index), dtype=bool)
        mask[[index[c] for c in groups[group]]] = True
        masks[vid] = mask
    return masks


def evaluate_tools(labels, emb: VideoEmbeddings, positive: torch.Tensor, negative: torch.Tensor | None,
                   scale: float, opts: EvalOptions):
    targets = np.concatenate([_frame_targets(labels, emb, vid) for vid in emb.frames])

    def scores(scoring: str) -> np.ndarray:
        return np.concatenate([tool_scores(emb.frames[vid], positive, scale, negative, scoring) for vid in emb.frames])

    out = M.tool_metrics(targets, scores(opts.tool_scoring), labels.class_names, opts.tool_threshold)
    prevalence = [(targets[:, k][targets[:, k] >= 0] == 1).mean()
                  for k in range(targets.shape[1]) if (targets[:, k] == 1).any()]
    out["chance"] = {"mAP": float(np.mean(prevalence)) if prevalence else float("nan"),
                     "note": "AP of a random scorer equals the tool's prevalence; this is their mean"}
    out["scoring"] = opts.tool_scoring
    # The other scorings side by side: which one suits a model is an empirical question (zero_shot docstring).
    usable = [s for s in TOOL_SCORINGS if negative is not None or s not in NEEDS_NEGATIVE_PROMPTS]
    out["mAP_by_scoring"] = {s: out["mAP"] if s == opts.tool_scoring else
                             M.tool_metrics(targets, scores(s), labels.class_names, opts.tool_threshold)["mAP"]
                             for s in usable}
    return out


def evaluate_surgery(vlabels, emb: VideoEmbeddings, classifier: torch.Tensor, scale: float) -> dict:
    ids = [v for v in vlabels.video_ids if v in emb.videos]
    sub = vlabels.subset(ids)
    x = np.stack([emb.videos[v] for v in ids])
    probs = video_type_probabilities(x, classifier, scale)
    out = M.video_classification_metrics(sub.targets, probs, sub.multi_label)
    out["chance"] = {"uniform_accuracy": 1.0 / len(sub.class_names)}
    out["class_names"] = list(sub.class_names)
    out["predictions"] = {v: sub.class_names[int(k)] for v, k in zip(ids, probs.argmax(axis=1), strict=False)}
    return out


def evaluate_retrieval(model, tokenizer, emb: VideoEmbeddings, texts: dict[str, str]) -> dict:
    """Video <-> text Recall@1/5/10 for held-out (video, text) pairs; pair i is video i with its text."""
    ids = [v for v in emb.videos if v in texts]
    if len(ids) < 2:
        raise DataError("retrieval needs at least two videos with texts")
    v = np.stack([emb.videos[i] for i in ids])
    t = encode_texts(model, tokenizer, [texts[i] for i in ids]).numpy()
    sim = v @ t.T
    truth = np.arange(len(ids))
    return {"text_to_video": M.retrieval_recall(sim.T, truth), "video_to_text": M.retrieval_recall(sim, truth),
            "n_pairs": len(ids), "chance_R@1": 1.0 / len(ids)}

