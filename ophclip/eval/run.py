"""Run an evaluation end to end: embed, classify, score, and write the report folder.

Zero-shot (:func:`run_zero_shot`):

1. :func:`~ophclip.eval.embed.embed_videos` streams each video's evaluated frames
   through the model and keeps one embedding per frame (and one per video).
2. Prompts become classifiers (:mod:`ophclip.eval.zero_shot`); phase, tool and
   surgery-type scores come from the stored embeddings (:mod:`ophclip.eval.tasks`).
3. Metrics (:mod:`ophclip.metrics`) with video-clustered bootstrap CIs and chance
   levels; ``metrics.json``, ``report.md``, ``predictions.parquet`` and plots are
   written to the output folder, each atomically.

:func:`run_zeroshot_config` and :func:`run_probe` do the same from a config: load the
benchmark (:mod:`ophclip.datasets`) and the model, evaluate, and write ``config.yaml``
and ``run.json`` beside the results. ``ophclip zeroshot``, ``ophclip probe`` and
``ophclip demo`` all call them, so the command line and the Python API produce the
same files.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import ophclip
from ophbase.device import resolve_device
from ophbase.io import atomic_write_json, atomic_write_parquet, atomic_write_text

from .. import plots
from ..config import save_config, to_dict
from ..datasets import load_benchmark, resolve_prompt_file, split_videos
from ..errors import ConfigError, DataError
from ..prompts import PromptSet, load_prompt_file, select_prompts
from .config import EvalOptions, ModelRef, ProbeConfig, ZeroShotConfig
from .embed import embed_videos
from .probe import FeatureSet, linear_probe
from .report import markdown_report, probe_markdown
from .tasks import evaluate_phases, evaluate_retrieval, evaluate_surgery, evaluate_tools
from .zero_shot import TOOL_SCORINGS, build_negative_classifier, build_zero_shot_classifier, logit_scale_of

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- from a model and labels


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
            write_phase_plots(phases, table, phase_result, out_dir, opts.max_ribbons)
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
    atomic_write_text(out_dir / "report.md", markdown_report(result))
    logger.info("wrote %s", out_dir / "metrics.json")
    return result


def write_phase_plots(labels, table: pd.DataFrame, phase_result: dict, out_dir: Path, max_ribbons: int) -> None:
    """The confusion matrix and one phase ribbon (truth against prediction) per video, up to ``max_ribbons``."""
    plots.confusion_matrix_plot(np.array(phase_result["confusion"]), labels.class_names,
                                out_dir / "confusion_matrix.png", title=f"{labels.name}: phase confusion")
    for vid, g in list(table.groupby("video_id", sort=False))[:max_ribbons]:
        acc = phase_result["per_video"].get(vid, {}).get("accuracy", float("nan"))
        plots.phase_ribbon(g["time_s"].to_numpy(), g["label"].to_numpy(), g["pred"].to_numpy(), labels.class_names,
                           out_dir / "ribbons" / f"{_safe(vid)}.png", title=f"{vid} (accuracy {acc:.2f})")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


# --------------------------------------------------------------------------- from a config


def load_model(ref: ModelRef):
    """(model, preprocess_eval, tokenizer) on the configured device."""
    model, _, preprocess = ophclip.create_model_and_transforms(ref.name, pretrained=ref.pretrained,
                                                              device=resolve_device(ref.device, key="model.device"))
    tokenizer = ophclip.get_tokenizer(ref.name)
    return model, preprocess, tokenizer


def write_run_record(out: Path, cfg, counts: dict) -> None:
    """``config.yaml`` (resolved) and ``run.json`` (versions, seed, model, counts) beside the results."""
    save_config(cfg, out / "config.yaml")
    versions = {"python": platform.python_version()}
    for dist in ("ophclip", "torch", "open_clip_torch", "transformers", "scikit-learn", "av"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    atomic_write_json(out / "run.json", {"config": to_dict(cfg), "versions": versions, "counts": counts})


def run_zeroshot_config(cfg: ZeroShotConfig, progress: bool = True) -> dict:
    """Everything `ophclip zeroshot` does after parsing: load, evaluate, write; returns the metrics.

    ``ophclip demo`` calls this with a :class:`ZeroShotConfig` for the held-out synthetic videos.
    """
    cfg.prompts = str(resolve_prompt_file(cfg.prompts))
    # Validate the prompt file before loading any model, so a typo costs no time.
    load_prompt_file(cfg.prompts)
    bench = load_benchmark(cfg.benchmark)
    net, preprocess, tokenizer = load_model(cfg.model)
    out_dir = Path(cfg.out)
    result = run_zero_shot(net, preprocess, tokenizer, bench.source, cfg.prompts, out_dir, phases=bench.phases,
                           tools=bench.tools, surgery=bench.surgery,
                           retrieval_texts=bench.retrieval_texts if cfg.retrieval else None, opts=cfg.eval,
                           progress=progress)
    write_run_record(out_dir, cfg, {"videos": result["n_videos"], "frames": result["n_frames"],
                                    "throughput_frames_per_s": result["throughput_frames_per_s"]})
    return result


def run_probe(cfg: ProbeConfig, progress: bool = True, model_and_preprocess=None) -> dict:
    """Embed train and test videos once, then fit the probes; writes probe.json and probe.md.

    ``model_and_preprocess`` replaces loading ``cfg.model`` (a benchmark probing another feature of a model).
    """
    test_bench = load_benchmark(cfg.benchmark)
    if cfg.train_split is not None:
        train_bench = load_benchmark(dataclasses.replace(cfg.benchmark, split=cfg.train_split))
        train_ids, test_ids = train_bench.phases.video_ids, test_bench.phases.video_ids
    else:
        train_bench = test_bench
        train_ids, test_ids = split_videos(test_bench.phases, cfg.test_fraction, cfg.split_seed)
    model, preprocess = model_and_preprocess or load_model(cfg.model)[:2]
    o = cfg.eval
    train_emb = embed_videos(model, preprocess, train_bench.source, train_bench.phases, o.fps, o.batch_size,
                             o.video_frames, train_ids, progress)
    test_emb = embed_videos(model, preprocess, test_bench.source, test_bench.phases, o.fps, o.batch_size,
                            o.video_frames, test_ids, progress)
    result = linear_probe(FeatureSet.from_embeddings(train_emb, train_bench.phases),
                          FeatureSet.from_embeddings(test_emb, test_bench.phases), cfg.probe)
    result["benchmark"] = test_bench.phases.name
    out = Path(cfg.out)
    atomic_write_json(out / "probe.json", result)
    atomic_write_text(out / "probe.md", probe_markdown(result))
    write_run_record(out, cfg, {"train_videos": len(train_ids), "test_videos": len(test_ids),
                                "train_frames": train_emb.n_frames, "test_frames": test_emb.n_frames})
    return result
