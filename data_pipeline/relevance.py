"""Relevance filter: keep narration about the surgery, drop chatter.

The default scores a sentence by the number of distinct lexicon terms in it (after
correction), minus one when it is a request to the staff. A learned classifier plugs in by name: ``denoise.relevance=classifier``
with ``denoise.classifier="package.module:callable"``, where the callable maps a
list of sentences to probabilities of being surgical narration.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence

from .config import DenoiseConfig
from .errors import StageError
from .lexicon import Lexicon

logger = logging.getLogger(__name__)

Scorer = Callable[[Sequence[str]], list[float]]


# Requests to the theatre staff ("can you move the microscope", "more irrigation please") name
# equipment but say nothing about the surgery; they need one more term to count as narration.
_REQUEST = re.compile(r"\b(?:please|thank you|thanks)\b|^(?:can|could|would) (?:you|i|someone|somebody)\b", re.I)


def lexicon_score(text: str, lexicon: Lexicon) -> float:
    """Distinct lexicon terms in ``text``, minus one for a request to the staff."""
    return float(len(set(lexicon.find_terms(text)))) - (1.0 if _REQUEST.search(text.strip()) else 0.0)


def lexicon_scorer(lexicon: Lexicon) -> Scorer:
    def score(texts: Sequence[str]) -> list[float]:
        return [lexicon_score(t, lexicon) for t in texts]

    return score


def load_classifier(spec: str) -> Scorer:
    """Import ``"package.module:callable"``; the callable takes list[str] and returns list[float]."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StageError(f"denoise.classifier = {spec!r}; expected 'package.module:callable'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise StageError(f"denoise.classifier = {spec!r} cannot be imported ({e})") from None
    if not callable(fn):
        raise StageError(f"denoise.classifier = {spec!r} is not callable")
    return fn


class RelevanceFilter:
    """``keep(texts) -> (mask, scores)`` under the configured scorer and threshold."""

    def __init__(self, cfg: DenoiseConfig, lexicon: Lexicon):
        self.mode = cfg.relevance
        if cfg.relevance == "lexicon":
            self.scorer, self.threshold = lexicon_scorer(lexicon), cfg.min_relevance
        elif cfg.relevance == "classifier":
            self.scorer, self.threshold = load_classifier(cfg.classifier), cfg.classifier_threshold
        else:
            self.scorer, self.threshold = None, 0.0

    def keep(self, texts: Sequence[str]) -> tuple[list[bool], list[float]]:
        if self.scorer is None:
            return [True] * len(texts), [float("nan")] * len(texts)
        raw = self.scorer(list(texts))
        try:
            scores = [float(s) for s in raw]
        except TypeError:
            raise StageError(
                f"relevance scorer returned {type(raw).__name__}; expected one float per sentence"
            ) from None
        if len(scores) != len(texts):
            raise StageError(f"relevance scorer returned {len(scores)} scores for {len(texts)} sentences")
        return [s >= self.threshold for s in scores], scores
