"""Deprecated: moved to :mod:`ophclip.eval.zero_shot`; this alias keeps old imports working.

Import from ``ophclip.eval.zero_shot`` (or ``ophclip.eval``) in new code.
"""

from ophbase.device import module_device as model_device

from .eval.zero_shot import (
    NEEDS_NEGATIVE_PROMPTS,
    TOOL_SCORINGS,
    ToolScoring,
    build_negative_classifier,
    build_zero_shot_classifier,
    class_logits,
    encode_texts,
    logit_scale_of,
    phase_probabilities,
    smooth_probabilities,
    tool_scores,
    video_type_probabilities,
)

__all__ = [
    "NEEDS_NEGATIVE_PROMPTS", "TOOL_SCORINGS", "ToolScoring", "build_negative_classifier",
    "build_zero_shot_classifier", "class_logits", "encode_texts", "logit_scale_of", "model_device",
    "phase_probabilities", "smooth_probabilities", "tool_scores", "video_type_probabilities",
]  # fmt: skip
