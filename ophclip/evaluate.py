"""Zero-shot evaluation of any model with the OphCLIP API on a benchmark adapter's labels.

Flow (:func:`run_zero_shot`):

1. :func:`embed_videos` streams each video's evaluated frames from a frame source
   in chunks of ``batch_size`` (``preprocess_eval`` -> ``encode_image``, no_grad,
   bf16 autocast on a GPU that supports it). Only the (D,) embedding of each
   frame is kept, so memory does not grow with video length beyond T x D floats.
   A few frames per video (``video_frames``, evenly spaced) are also kept,
   preprocessed, for the video-level embedding (``encode_video``).
2. Prompts become classifiers (:mod:`ophclip.zero_shot`); phase, tool and surgery-type
   scores come from the stored embeddings.
3. Metrics (:mod:`ophclip.metrics`) with video-clustered bootstrap CIs and chance
   levels; ``metrics.json``, ``report.md``, ``predictions.parquet`` and plots are
   written to the output folder, each atomically.

The labels and frame sources are duck-typed (``benchmarks.adapters.FrameLabels``,
``VideoLabels`` and the ``*Source`` classes), so this module does not import
``benchmarks``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from . import plots
from .errors import ConfigError, DataError
from .probe import ProbeOptions
from .prompts import PromptSet, select_prompts
from .zero_shot import (
    NEEDS_NEGATIVE_PROMPTS,
    TOOL_SCORINGS,
    build_negative_classifier,
    build_zero_shot_classifier,
    encode_texts,
    logit_scale_of,
    model_device,
    phase_probabilities,
    smooth_probabilities,
    tool_scores,
    video_type_probabilities,
)

logger = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    """How to evaluate (data only; part of the ``eval`` section of configs/eval_*.yaml)."""

    fps: float | None = 1.0  # frames per second evaluated (None: every annotated frame)
    batch_size: int = 32
    video_frames: int = 8  # frames per video for the video-level embedding (surgery type, retrieval)
    smoothing_window: int = 1  # phase-probability moving average, in evaluated frames (1: off)
    causal_smoothing: bool = False
    tool_scoring: str = "centered"  # centered | contrast | sigmoid (see ophclip.zero_shot.TOOL_SCORINGS)
    tool_threshold: float = M.DEFAULT_TOOL_THRESHOLD
    n_boot: int = 1000  # bootstrap resamples of videos for 95% CIs (0: none)
    seed: int = 0
    max_videos: int | None = None  # evaluate only the first N videos (quick looks)
    plots: bool = True
    max_ribbons: int = 50  # phase-ribbon PNGs written (one per video, up to this many)


@dataclass
class BenchmarkConfig:
    """Which benchmark to read and where (data only; ``benchmarks.adapters.loader`` acts on it).

    ``name`` is one of: synthetic, cataract101, cataract1k, cataract21, cataracts,
    ophnet, generic_segments, generic_images. ``root`` is the dataset folder (or,
    for ophnet, the segment CSV; for generic_images, the path,label CSV).
    """

    name: str = "synthetic"
    root: str = ""
    split: str | None = None  # videos of this split only; null: synthetic -> eval, others -> all videos
    video_dir: str | None = None  # decode frames from these videos (default: the benchmark's own)
    frames_dir: str | None = None  # or read extracted frames: <frames_dir>/<video_id>/*.jpg|png
    frames_stride: int = 1  # native frames between two extracted frames
    tools_dir: str | None = None  # cataracts: folder of tool CSVs
    surgery_csv: str | None = None  # ophnet: OphNet2024_surgery.csv
    class_names_file: str | None = None  # ophnet / generic: id,name or class list
    level: str = "phase"  # ophnet: phase | operation
    half_as: str = "positive"  # cataracts tools: what 0.5 means (positive | negative | ignore)
    annotation_fps: float = 1.0  # ophnet / generic segments: rate labels are painted at
    frame_tolerance: int = 1  # video vs annotation frame-count difference allowed
    check_frame_counts: bool = True


@dataclass
class ModelRef:
    name: str = "OphCLIP-tiny-MiniLM"  # registered model name or a save_pretrained folder
    pretrained: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:1


@dataclass
class ZeroShotConfig:
    """``ophclip zeroshot``: configs/eval_*.yaml."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    model: ModelRef = field(default_factory=ModelRef)
    prompts: str = "benchmarks/prompts/synthetic.yaml"
    out: str = "runs/zeroshot"
    retrieval: bool = True  # video <-> title retrieval where the benchmark has titles (synthetic)
    eval: EvalOptions = field(default_factory=EvalOptions)


@dataclass
class ProbeConfig:
    """``ophclip probe``: configs/eval_probe_*.yaml."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    model: ModelRef = field(default_factory=ModelRef)
    train_split: str | None = None  # None: random by-video split of the benchmark.split videos
    test_fraction: float = 0.3
    split_seed: int = 0
    out: str = "runs/probe"
    eval: EvalOptions = field(default_factory=EvalOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)


@dataclass
class VideoEmbeddings:
    """Frame and video embeddings of a benchmark's videos (L2-normalised, float32, CPU)."""

    frame_index: dict[str, np.ndarray] = field(default_factory=dict)  # native frame index of each row
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # (n, D)
    videos: dict[str, np.ndarray] = field(default_factory=dict)  # (D,)
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return sum(len(v) for v in self.frames.values())

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / self.seconds if self.seconds > 0 else float("nan")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _as_batch(preprocess, frames: np.ndarray) -> torch.Tensor:
    x = preprocess(frames)
    if not torch.is_tensor(x) or x.ndim != 4:
        raise DataError(f"preprocess_eval returned {type(x).__name__} {getattr(x, 'shape', '')}; expected (T, 3, S, S)")
    return x


@torch.no_grad()
def embed_videos(
    model,
    preprocess,
    source,
    labels,
    fps: float | None = 1.0,
    batch_size: int = 32,
    video_frames: int = 8,
    video_ids: list[str] | None = None,
    progress: bool = True,
) -> VideoEmbeddings:
    """Stream every video's evaluated frames through ``model.encode_image`` (see module docstring)."""
    from tqdm.auto import tqdm

    model.eval()
    device = model_device(model)
    out = VideoEmbeddings()
    ids = video_ids if video_ids is not None else labels.video_ids
    start = time.perf_counter()
    bar = tqdm(ids, desc="embedding videos", unit="video", disable=not progress)
    for vid in bar:
        row = labels.video(vid)
        indices = labels.sample_indices(vid, fps)
        if len(indices) == 0:
            raise DataError(f"{row.get('annotation', labels.name)}: video {vid!r} is empty (0 frames to evaluate)")
        keep_for_video = set(np.linspace(0, len(indices) - 1, min(video_frames, len(indices))).round().astype(int).tolist())
        emb = np.zeros((len(indices), 0), dtype=np.float32)
        seen = np.zeros(len(indices), dtype=bool)
        clip_frames: dict[int, torch.Tensor] = {}
        for positions, frames in source.iter_frames(vid, indices, float(row["fps"]), batch_size):
            x = _as_batch(preprocess, frames)
            with _autocast(device):
                e = model.encode_image(x.to(device), normalize=True)
            e = torch.nn.functional.normalize(e.float(), dim=-1).cpu().numpy()
            if emb.shape[1] == 0:
                emb = np.zeros((len(indices), e.shape[1]), dtype=np.float32)
            emb[positions] = e
            seen[positions] = True
            for j, p in enumerate(positions.tolist()):
                if p in keep_for_video:
                    clip_frames[p] = x[j]
            bar.set_postfix(frames=int(seen.sum()))
        if not seen.any():
            raise DataError(f"{row.get('source') or vid}: no frames could be read for video {vid!r}")
        out.frame_index[vid] = indices[seen]
        out.frames[vid] = emb[seen]
        clip = torch.stack([clip_frames[p] for p in sorted(clip_frames)]).unsqueeze(0).to(device)
        with _autocast(device):
            v = model.encode_video(clip, normalize=True)
        out.videos[vid] = torch.nn.functional.normalize(v.float(), dim=-1)[0].cpu().numpy()
    out.seconds = time.perf_counter() - start
    logger.info("embedded %d frames of %d videos in %.1f s (%.1f frames/s)",
                out.n_frames, len(ids), out.seconds, out.frames_per_second)
    return out


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


# --------------------------------------------------------------------------- the whole run


def check_options(opts: EvalOptions) -> None:
    """Reject option values that cannot work, naming the ``eval.`` key."""
    if opts.tool_scoring not in TOOL_SCORINGS:
        raise ConfigError(f"eval.tool_scoring = {opts.tool_scoring!r}; expected one of {sorted(TOOL_SCORINGS)}")
    if opts.smoothing_window < 1:
        raise ConfigError(f"eval.smoothing_window = {opts.smoothing_window}; expected >= 1 (1 = no smoothing)")
    if opts.batch_size < 1 or opts.video_frames < 1:
        raise ConfigError("eval.batch_size and eval.video_frames must be >= 1")
    if opts.fps is not None and opts.fps <= 0:
        raise ConfigError(f"eval.fps = {opts.fps}; expected > 0, or null for every frame")
    if not 0 <= opts.tool_threshold <= 1:
        raise ConfigError(f"eval.tool_threshold = {opts.tool_threshold}; expected a probability in [0, 1]")


def run_zero_shot(
    model,
    preprocess,
    tokenizer,
    source,
    prompts: str | Path | dict[str, PromptSet],
    out_dir: str | Path,
    phases=None,
    tools=None,
    surgery=None,
    retrieval_texts: dict[str, str] | None = None,
    opts: EvalOptions | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate every task that has labels; write the report folder; return the metrics dict."""
    from data_pipeline._io import atomic_write_json, atomic_write_parquet

    opts = opts or EvalOptions()
    check_options(opts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_labels = phases if phases is not None else tools
    if frame_labels is None:
        raise DataError("run_zero_shot needs phase or tool labels (surgery type alone has no frames to stream)")
    ids = frame_labels.video_ids[: opts.max_videos] if opts.max_videos else frame_labels.video_ids
    emb = embed_videos(model, preprocess, source, frame_labels, opts.fps, opts.batch_size, opts.video_frames,
                       ids, progress)
    scale = logit_scale_of(model)
    result: dict[str, Any] = {
        "benchmark": frame_labels.name,
        "n_videos": len(ids),
        "n_frames": emb.n_frames,
        "eval_fps": opts.fps,
        "throughput_frames_per_s": emb.frames_per_second,
        "logit_scale": scale,
    }
    if phases is not None:
        ps = select_prompts(prompts, "phase", phases.class_names)
        clf = build_zero_shot_classifier(model, tokenizer, ps)
        phase_result, table = evaluate_phases(phases, emb, clf, scale, opts)
        result["phase"] = phase_result
        atomic_write_parquet(out_dir / "predictions.parquet", table)
        if opts.plots:
            _phase_plots(phases, table, phase_result, out_dir, opts)
    if tools is not None:
        missing = [v for v in emb.frames if v not in tools.labels]
        if missing:
            raise DataError(f"{tools.name}: no tool labels for videos {missing[:5]}")
        ps = select_prompts(prompts, "tools", tools.class_names)
        pos = build_zero_shot_classifier(model, tokenizer, ps)
        neg = build_negative_classifier(model, tokenizer, ps)
        result["tools"] = evaluate_tools(tools, emb, pos, neg, scale, opts)
        if opts.plots:
            plots.tool_ap_bars(result["tools"]["per_tool"], out_dir / "tool_ap.png", title=f"{tools.name}: per-tool AP")
    if surgery is not None:
        ps = select_prompts(prompts, "surgery_type", surgery.class_names)
        clf = build_zero_shot_classifier(model, tokenizer, ps)
        result["surgery_type"] = evaluate_surgery(surgery, emb, clf, scale)
    if retrieval_texts:
        result["retrieval"] = evaluate_retrieval(model, tokenizer, emb, retrieval_texts)
    atomic_write_json(out_dir / "metrics.json", result)
    from data_pipeline._io import atomic_write_text

    atomic_write_text(out_dir / "report.md", markdown_report(result))
    logger.info("wrote %s", out_dir / "metrics.json")
    return result


def _phase_plots(labels, table: pd.DataFrame, phase_result: dict, out_dir: Path, opts: EvalOptions) -> None:
    plots.confusion_matrix_plot(np.array(phase_result["confusion"]), labels.class_names,
                                out_dir / "confusion_matrix.png", title=f"{labels.name}: phase confusion")
    for vid, g in list(table.groupby("video_id", sort=False))[: opts.max_ribbons]:
        acc = phase_result["per_video"].get(vid, {}).get("accuracy", float("nan"))
        plots.phase_ribbon(g["time_s"].to_numpy(), g["label"].to_numpy(), g["pred"].to_numpy(), labels.class_names,
                           out_dir / "ribbons" / f"{_safe(vid)}.png", title=f"{vid} (accuracy {acc:.2f})")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _fmt(value: float, ci: list | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def markdown_report(result: dict) -> str:
    """A Markdown summary of :func:`run_zero_shot`'s metrics, chance beside each number."""
    lines = [f"# Zero-shot evaluation: {result['benchmark']}", "",
             f"{result['n_videos']} videos, {result['n_frames']} frames at {result['eval_fps']} fps; "
             f"{result['throughput_frames_per_s']:.1f} frames/s.", ""]
    if "phase" in result:
        p, c = result["phase"], result["phase"]["chance"]
        lines += ["## Phase recognition", "", "| metric | value [95% CI, videos resampled] | random guess |",
                  "|---|---|---|",
                  f"| accuracy, mean over videos | {_fmt(p['video_accuracy'], p.get('video_accuracy_ci'))} | {_fmt(c['random_video_accuracy'])} |",
                  f"| macro-F1, mean over videos | {_fmt(p['video_f1'], p.get('video_f1_ci'))} | {_fmt(c['random_video_f1'])} |",
                  f"| accuracy, pooled frames | {_fmt(p['pooled_accuracy'], p.get('pooled_accuracy_ci'))} | {_fmt(c['random_pooled_accuracy'])} |",
                  f"| macro-F1, pooled frames | {_fmt(p['pooled_f1'], p.get('pooled_f1_ci'))} | {_fmt(c['random_pooled_f1'])} |",
                  "", f"Chance: uniform {c['uniform_accuracy']:.3f}, majority class {c['majority_accuracy']:.3f}.", ""]  # fmt: skip
    if "tools" in result:
        t = result["tools"]
        lines += ["## Instrument recognition", "",
                  f"mAP {_fmt(t['mAP'])} (chance {_fmt(t['chance']['mAP'])}); FPR at threshold {t['threshold']} "
                  f"= {_fmt(t['fpr'])} ({t['scoring']} scores).", "",
                  "mAP by scoring: " + ", ".join(f"{k} {_fmt(v)}" for k, v in t.get("mAP_by_scoring", {}).items()),
                  "", "| tool | AP | FPR | positive frames |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {_fmt(v['ap'])} | {_fmt(v['fpr'])} | {v['n_positive']} |" for n, v in t["per_tool"].items()]
        lines.append("")
    if "surgery_type" in result:
        s = result["surgery_type"]
        body = ", ".join(f"{k} {_fmt(v)}" for k, v in s.items() if isinstance(v, float))
        lines += ["## Surgery type (per video)", "", f"{body}; chance {s['chance']['uniform_accuracy']:.3f}.", ""]
    if "retrieval" in result:
        r = result["retrieval"]
        lines += ["## Retrieval", "", "| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
        for d in ("text_to_video", "video_to_text"):
            lines.append(f"| {d.replace('_', ' ')} | " + " | ".join(_fmt(r[d][k]) for k in ("R@1", "R@5", "R@10")) + " |")
        lines += ["", f"{r['n_pairs']} pairs; chance R@1 {r['chance_R@1']:.3f}.", ""]
    return "\n".join(lines)
