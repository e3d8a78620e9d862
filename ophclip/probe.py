"""Deprecated: moved to :mod:`ophclip.eval.probe` (the report to :mod:`ophclip.eval.report`).

This alias keeps old imports working; import from ``ophclip.eval`` in new code.
"""

from .eval import (
    HEADLINE,
    FeatureSet,
    ProbeOptions,
    fit_probe,
    knn_predict,
    linear_probe,
    pick_videos,
    probe_markdown,
)

__all__ = ["HEADLINE", "FeatureSet", "ProbeOptions", "fit_probe", "knn_predict", "linear_probe", "pick_videos",
           "probe_markdown"]
