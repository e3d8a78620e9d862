"""Stage 6: title (+ description) -> a structured JSON summary and a one-paragraph text.

The LLM is asked for JSON with :data:`SUMMARY_KEYS` (``prompts/summarize.txt``). The
reply is parsed and checked against the schema; when it fails (small models often
do), a deterministic summary is built from the title and the lexicon terms found in
the title and description, and the fallback is counted. ``summary_text`` is always
rendered from the validated JSON, so it never says more than the JSON does.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from .cache import JsonCache, cache_key
from .config import SummaryConfig
from .lexicon import Lexicon
from .llm import LLM, generate_in_batches
from .rewrite import load_prompt

logger = logging.getLogger(__name__)

# key -> expected type: str or list[str]
SUMMARY_KEYS: dict[str, type] = {
    "surgery": str,
    "cause": str,
    "objective": str,
    "key_steps": list,
    "instruments": list,
    "medications": list,
    "post_op_care": str,
}


def validate_summary(obj) -> str | None:
    """None when ``obj`` matches the schema, else what is wrong."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    missing = [k for k in SUMMARY_KEYS if k not in obj]
    if missing:
        return f"missing keys {missing}"
    for k, tp in SUMMARY_KEYS.items():
        v = obj[k]
        if tp is str and not isinstance(v, str):
            return f"{k} must be a string"
        if tp is list and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return f"{k} must be a list of strings"
    if not obj["surgery"].strip():
        return "surgery is empty"
    return None


def parse_summary(text: str) -> tuple[dict | None, str | None]:
    m = re.search(r"\{.*\}", text, flags=re.S)
    if m is None:
        return None, "no JSON object in the reply"
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e.msg})"
    err = validate_summary(obj)
    if err:
        return None, err
    return {k: obj[k] for k in SUMMARY_KEYS}, None


def fallback_summary(title: str, description: str, lexicon: Lexicon) -> dict:
    terms = lexicon.find_terms(f"{title}. {description}")
    by_cat = {t.text: t.category for t in lexicon.terms}
    pick = lambda cat: sorted({t for t in terms if by_cat.get(t) == cat})  # noqa: E731
    return {
        "surgery": title.strip() or "eye surgery",
        "cause": "",
        "objective": "",
        "key_steps": pick("procedure"),
        "instruments": pick("instrument"),
        "medications": pick("drug"),
        "post_op_care": "",
    }


def render_summary(s: dict) -> str:
    parts = [s["surgery"].rstrip(".") + "."]
    if s["cause"]:
        parts.append(f"Indication: {s['cause'].rstrip('.')}.")
    if s["objective"]:
        parts.append(f"Objective: {s['objective'].rstrip('.')}.")
    for key, label in (("key_steps", "Key steps"), ("instruments", "Instruments"), ("medications", "Medications")):
        if s[key]:
            parts.append(f"{label}: {', '.join(s[key])}.")
    if s["post_op_care"]:
        parts.append(f"Post-operative care: {s['post_op_care'].rstrip('.')}.")
    return " ".join(parts)


@dataclass
class SummaryResult:
    summary: dict
    text: str
    model: str  # "" when the fallback was used
    status: str  # ok | fallback reason | disabled


class Summarizer:
    def __init__(self, cfg: SummaryConfig, llm: LLM | None, lexicon: Lexicon, cache: JsonCache, model_id: str):
        self.cfg, self.llm, self.lexicon, self.cache = cfg, llm, lexicon, cache
        self.template = load_prompt(cfg.prompt_file, "summarize.txt")
        self.model_id = model_id

    def key(self, title: str, description: str) -> str:
        return cache_key("summary", title, description, self.template, self.model_id, self.cfg.max_new_tokens)

    def active(self) -> bool:
        return self.cfg.enabled and self.model_id != "none"

    def pending(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not self.active():
            return []
        return sorted({it for it in items if self.cache.get(self.key(*it)) is None})

    def prompts(self, items: list[tuple[str, str]]) -> list[str]:
        return [self.template.format(title=t, description=d or "(none)") for t, d in items]

    def store(self, items: list[tuple[str, str]], outputs: list[str]) -> None:
        for (t, d), o in zip(items, outputs, strict=True):
            self.cache.put(self.key(t, d), {"title": t, "description": d, "output": o, "model": self.model_id})

    def generate_pending(self, items: list[tuple[str, str]], progress=None) -> None:
        generate_in_batches(self.llm, items, self.pending(items), self.prompts, self.store, self.cfg.max_new_tokens,
                            progress)

    def result(self, title: str, description: str) -> SummaryResult:
        status = "disabled"
        if self.active():
            entry = self.cache.get(self.key(title, description))
            if entry is None:
                status = "missing"
            else:
                summary, err = parse_summary(entry["output"])
                if summary is not None:
                    return SummaryResult(summary, render_summary(summary), self.model_id, "ok")
                status = err or "invalid"
        summary = fallback_summary(title, description, self.lexicon)
        return SummaryResult(summary, render_summary(summary), "", status)
