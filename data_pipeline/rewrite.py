"""Stage 5: rewrite each narration unit into a clean, self-contained clip description.

The prompt is a template file (``prompts/rewrite.txt``, ``{narration}`` placeholder).
An output is accepted only when it passes :func:`validate_rewrite`: word count within
bounds, and no surgical term invented or dropped relative to the input (terms found
with the lexicon). Otherwise the cleaned narration is kept and the fallback is
counted with its reason. Outputs are cached by ``hash(input, prompt, model, settings)``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .cache import JsonCache, cache_key
from .config import RewriteConfig
from .errors import InputError
from .lexicon import Lexicon
from .llm import LLM, generate_in_batches

logger = logging.getLogger(__name__)

ACCEPTED = "ok"


def load_prompt(path: str, default_name: str) -> str:
    if path:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: prompt template not found")
        return p.read_text("utf-8")
    return resources.files("data_pipeline").joinpath(f"prompts/{default_name}").read_text("utf-8")


def clean_output(text: str) -> str:
    """First non-empty line, without quotes or a leading 'Rewritten:'-style label."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "").strip('"“”')
    line = re.sub(r"^(?:rewritten|rewrite|sentence|description|clip|narration)\s*(?:description)?\s*:\s*", "", line, flags=re.I)
    return line.strip().strip('"“”').strip()


def validate_rewrite(source: str, output: str, lexicon: Lexicon, cfg: RewriteConfig) -> str:
    """``ACCEPTED`` or the reason the rewrite is rejected."""
    n = len(output.split())
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.max_words:
        return "too_long"
    src_terms = {t.lower() for t in lexicon.find_terms(source)}
    out_terms = {t.lower() for t in lexicon.find_terms(output)}
    if len(out_terms - src_terms) > cfg.max_invented_terms:
        return "invented_terms"
    if len(src_terms - out_terms) > cfg.max_dropped_terms:
        return "dropped_terms"
    return ACCEPTED


@dataclass
class RewriteResult:
    text: str
    model: str  # the model whose text was kept ("" when the narration was kept)
    status: str  # ok | a rejection reason | disabled


class Rewriter:
    def __init__(self, cfg: RewriteConfig, llm: LLM | None, lexicon: Lexicon, cache: JsonCache, model_id: str):
        self.cfg, self.llm, self.lexicon, self.cache = cfg, llm, lexicon, cache
        self.template = load_prompt(cfg.prompt_file, "rewrite.txt")
        self.model_id = model_id

    def key(self, narration: str) -> str:
        return cache_key("rewrite", narration, self.template, self.model_id, self.cfg.max_new_tokens)

    def pending(self, narrations: list[str]) -> list[str]:
        """Narrations with no cached output yet (what a backend still has to generate)."""
        if not self.cfg.enabled or self.model_id == "none":
            return []
        return sorted({n for n in narrations if self.cache.get(self.key(n)) is None})

    def prompts(self, narrations: list[str]) -> list[str]:
        return [self.template.format(narration=n) for n in narrations]

    def store(self, narrations: list[str], outputs: list[str]) -> None:
        for n, o in zip(narrations, outputs, strict=True):
            self.cache.put(self.key(n), {"narration": n, "output": o, "model": self.model_id})

    def generate_pending(self, narrations: list[str], progress=None) -> None:
        generate_in_batches(self.llm, narrations, self.pending(narrations), self.prompts, self.store, self.cfg.max_new_tokens,
                            progress)

    def result(self, narration: str) -> RewriteResult:
        if not self.cfg.enabled or self.model_id == "none":
            return RewriteResult(narration, "", "disabled")
        entry = self.cache.get(self.key(narration))
        if entry is None:
            return RewriteResult(narration, "", "missing")
        out = clean_output(entry["output"])
        status = validate_rewrite(narration, out, self.lexicon, self.cfg)
        if status != ACCEPTED:
            return RewriteResult(narration, "", status)
        return RewriteResult(out, self.model_id, ACCEPTED)
