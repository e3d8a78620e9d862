"""Deprecated: the evaluation moved to :mod:`ophclip.eval`, the benchmark config to :mod:`ophclip.datasets`.

This alias keeps old imports working. In new code: the configs from
``ophclip.eval.config``, the embedding from ``ophclip.eval.embed``, the per-task
metrics from ``ophclip.eval.tasks``, :func:`run_zero_shot` from ``ophclip.eval.run``,
the report from ``ophclip.eval.report`` (all also from ``ophclip.eval``), and
``resolve_device`` from :mod:`ophbase.device`.
"""

from ophbase.device import resolve_device

from .eval import (
    BenchmarkConfig,
    EvalOptions,
    ModelRef,
    ProbeConfig,
    VideoEmbeddings,
    ZeroShotConfig,
    chance_levels,
    check_options,
    embed_videos,
    evaluate_phases,
    evaluate_retrieval,
    evaluate_surgery,
    evaluate_tools,
    markdown_report,
    run_zero_shot,
)

__all__ = [
    "BenchmarkConfig", "EvalOptions", "ModelRef", "ProbeConfig", "VideoEmbeddings", "ZeroShotConfig",
    "chance_levels", "check_options", "embed_videos", "evaluate_phases", "evaluate_retrieval", "evaluate_surgery",
    "evaluate_tools", "markdown_report", "resolve_device", "run_zero_shot",
]  # fmt: skip
