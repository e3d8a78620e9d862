"""Zero-shot recognition from prompts: phase (per frame), tools (multi-label), surgery type (per video).

The classifier (:mod:`ophclip.classifier`) is open_clip's recipe: for each class,
encode every sentence x template, L2-normalise, average, and normalise again. A
frame's class scores are the cosine similarities to those class embeddings, times
the model's logit scale.

* Phase: softmax over classes per frame, then optionally a moving average over
  time *within one video* (:func:`smooth_probabilities`), then argmax.
* Tools: each tool is scored on its own, by one of :data:`TOOL_SCORINGS`. Every tool
  prompt shares the template ("a frame of eye surgery with {} in view"), so a frame's
  raw similarities to all tool prompts move together: a frame that looks like "a frame
  of eye surgery" scores every tool high. That shared offset varies across frames and
  swamps the per-tool signal when frames are ranked (AP).
  - ``"centered"`` (default) removes it: p = sigmoid(scale * (cos_k - mean_j cos_j)),
    the tool's margin over the frame's average tool prompt. 0.5 means "more like this
    tool than like the average tool".
  - ``"contrast"`` compares the tool prompt with its negative prompt ("... with no {tool}
    in view"): p = sigmoid(scale * (cos_pos - cos_neg)), CLIP's two-way softmax for binary
    zero-shot. Text towers that do not model negation (MiniLM) make the two prompts near
    twins, so the margin is mostly noise.
  - ``"sigmoid"`` is sigmoid(scale * cos_pos), uncorrected: the baseline the others beat.
  The three rank frames differently, so they give different APs; the README's results
  table reports them side by side.
* Surgery type: softmax over the video-level embedding's similarities.

Embeddings passed in are expected L2-normalised (the model API's ``normalize=True``).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

# The classifier builders are core (streaming and distillation use them too); re-exported here.
from ..classifier import build_negative_classifier, build_zero_shot_classifier, encode_texts, logit_scale_of
from ..errors import ConfigError

__all__ = [
    "NEEDS_NEGATIVE_PROMPTS", "TOOL_SCORINGS", "ToolScoring", "build_negative_classifier", "build_zero_shot_classifier",
    "class_logits", "encode_texts", "logit_scale_of", "phase_probabilities", "smooth_probabilities", "tool_scores",
    "video_type_probabilities",
]

logger = logging.getLogger(__name__)

ToolScoring = Literal["centered", "contrast", "sigmoid"]


def class_logits(embeddings: torch.Tensor | np.ndarray, classifier: torch.Tensor, scale: float) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings).float()
    return scale * x @ classifier.float()


def phase_probabilities(embeddings, classifier: torch.Tensor, scale: float) -> np.ndarray:
    """(N, K) per-frame softmax over the phase prompts."""
    return torch.softmax(class_logits(embeddings, classifier, scale), dim=-1).numpy()


def smooth_probabilities(probs: np.ndarray, window: int, causal: bool = False) -> np.ndarray:
    """Moving average of one video's (T, K) probabilities over ``window`` frames.

    Centred by default; ``causal=True`` averages only the current and past frames,
    as a streaming recogniser must. The edges repeat the first/last frame.
    """
    if window <= 1 or len(probs) == 0:
        return probs
    # uniform_filter1d centres the window; shifting the origin makes it end at the current frame.
    origin = (window - 1) // 2 if causal else 0
    return uniform_filter1d(probs, size=window, axis=0, mode="nearest", origin=origin)


def _centered(pos: torch.Tensor, negative_logits) -> torch.Tensor:
    return pos - pos.mean(dim=1, keepdim=True)


def _contrast(pos: torch.Tensor, negative_logits) -> torch.Tensor:
    return pos - negative_logits()


def _uncorrected(pos: torch.Tensor, negative_logits) -> torch.Tensor:
    return pos


# scoring name -> (logits, negative logits thunk) -> corrected logits; sigmoid gives the probability.
TOOL_SCORINGS = {"centered": _centered, "contrast": _contrast, "sigmoid": _uncorrected}
NEEDS_NEGATIVE_PROMPTS = frozenset({"contrast"})


def tool_scores(
    embeddings,
    positive: torch.Tensor,
    scale: float,
    negative: torch.Tensor | None = None,
    scoring: ToolScoring = "centered",
) -> np.ndarray:
    """(N, K) per-tool presence scores in [0, 1] (see module docstring)."""
    if scoring not in TOOL_SCORINGS:
        raise ConfigError(f"tool scoring {scoring!r}; expected one of {sorted(TOOL_SCORINGS)}")
    if scoring in NEEDS_NEGATIVE_PROMPTS and negative is None:
        raise ValueError(f"scoring={scoring!r} needs the negative prompt classifier")
    pos = class_logits(embeddings, positive, scale)
    logits = TOOL_SCORINGS[scoring](pos, lambda: class_logits(embeddings, negative, scale))
    return torch.sigmoid(logits).numpy()


def video_type_probabilities(video_embeddings, classifier: torch.Tensor, scale: float) -> np.ndarray:
    """(V, K) softmax over surgery-type prompts from video-level embeddings."""
    return torch.softmax(class_logits(video_embeddings, classifier, scale), dim=-1).numpy()
