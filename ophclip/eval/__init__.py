"""Evaluation engines: zero-shot recognition from prompts, linear probes, retrieval.

=============  ================================================================
module         holds
=============  ================================================================
config         the configs (``ophclip zeroshot`` / ``ophclip probe``), data only
embed          frame and video embeddings streamed through the model
zero_shot      prompt classifiers and per-frame / per-video scores
tasks          phase, tool, surgery-type and retrieval metrics from embeddings
probe          the few-shot-by-video linear probe and the kNN classifier
report         the Markdown reports (``report.md``, ``probe.md``)
run            the runs end to end: :func:`run_zero_shot`, :func:`run_zeroshot_config`, :func:`run_probe`
=============  ================================================================

Benchmarks come from :mod:`ophclip.datasets`. Names load on first use (PEP 562), so
importing the package, or one of its config classes, does not import torch::

    from ophclip.eval import ZeroShotConfig, run_zeroshot_config
"""

from __future__ import annotations

from ophbase.lazy import lazy_attributes

_WHERE = {
    "BenchmarkConfig": "config",
    "EvalOptions": "config",
    "ModelRef": "config",
    "ProbeConfig": "config",
    "ProbeOptions": "config",
    "ZeroShotConfig": "config",
    "VideoEmbeddings": "embed",
    "embed_videos": "embed",
    "NEEDS_NEGATIVE_PROMPTS": "zero_shot",
    "TOOL_SCORINGS": "zero_shot",
    "ToolScoring": "zero_shot",
    "build_negative_classifier": "zero_shot",
    "build_zero_shot_classifier": "zero_shot",
    "class_logits": "zero_shot",
    "encode_texts": "zero_shot",
    "logit_scale_of": "zero_shot",
    "phase_probabilities": "zero_shot",
    "smooth_probabilities": "zero_shot",
    "tool_scores": "zero_shot",
    "video_type_probabilities": "zero_shot",
    "chance_levels": "tasks",
    "evaluate_phases": "tasks",
    "evaluate_retrieval": "tasks",
    "evaluate_surgery": "tasks",
    "evaluate_tools": "tasks",
    "HEADLINE": "probe",
    "FeatureSet": "probe",
    "fit_probe": "probe",
    "knn_predict": "probe",
    "linear_probe": "probe",
    "pick_videos": "probe",
    "markdown_report": "report",
    "probe_markdown": "report",
    "check_options": "run",
    "load_model": "run",
    "run_probe": "run",
    "run_zero_shot": "run",
    "run_zeroshot_config": "run",
    "write_phase_plots": "run",
    "write_run_record": "run",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
