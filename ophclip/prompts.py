"""Prompt files: YAML a user can copy and edit, mapping each class to sentences.

A file has one section per task (``phase``, ``tools``, ``surgery_type``) and
optional templates shared by all sections::

    templates:                      # optional; "{}" is replaced by each sentence
      - "a surgical video frame showing {}."
      - "in this step the surgeon performs {}."
    phase:
      templates: ["{}"]             # optional; overrides the top-level list here
      classes:
        Incision: ["the surgeon cuts a small corneal incision with a knife"]
        Rhexis: ["capsulorhexis", "the surgeon tears a round opening in the lens capsule"]
    tools:
      negative_templates: ["a surgical video frame with no {} in view."]   # optional
      classes:
        Bonn Forceps: ["Bonn forceps"]

Each class gets every sentence x template; their normalised text embeddings are
averaged (:func:`ophclip.zero_shot.build_zero_shot_classifier`). For tools, a
*negative* prompt per tool (``negative_templates`` filled with the tool's first
sentence) gives a calibrated present/absent score.

Validation (:func:`select_prompts`) is strict, and every error names the file:
a class the benchmark does not have, a benchmark class with no prompt, an empty
sentence list, or a template without ``{}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import load_yaml
from .errors import ConfigError

logger = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"  # the shipped prompt files (package data)

TASKS = ("phase", "tools", "surgery_type")
SECTION_KEYS = {"classes", "templates", "negative_templates"}
DEFAULT_NEGATIVE_TEMPLATES = ("a surgical video frame with no {} in view.",)


@dataclass
class PromptSet:
    """The validated prompts of one task, classes in the benchmark's order."""

    task: str
    classes: dict[str, list[str]]
    templates: list[str] = field(default_factory=lambda: ["{}"])
    negative_templates: list[str] = field(default_factory=lambda: list(DEFAULT_NEGATIVE_TEMPLATES))
    source: str = "<dict>"

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def texts(self, class_name: str) -> list[str]:
        """Every sentence x template of one class."""
        return [t.format(s) for s in self.classes[class_name] for t in self.templates]

    def negative_texts(self, class_name: str) -> list[str]:
        """The "not present" prompts of one class (tools), from its first sentence."""
        return [t.format(self.classes[class_name][0]) for t in self.negative_templates]


def resolve_prompt_file(path: str | Path) -> Path:
    """A prompt file path as given, else a shipped one: ``synthetic`` or ``synthetic.yaml`` -> ophclip/prompts/.

    An old path such as ``benchmarks/prompts/synthetic.yaml`` finds the shipped file of that name too.
    """
    p = Path(path)
    if p.is_file():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    shipped = PROMPTS_DIR / name
    return shipped if shipped.is_file() else p


def load_prompt_file(path: str | Path) -> dict[str, PromptSet]:
    """Parse and check the structure of a prompt file (a path, or a shipped file by name); its sections by task."""
    path = resolve_prompt_file(path)
    if not path.is_file():
        shipped = ", ".join(sorted(f.stem for f in PROMPTS_DIR.glob("*.yaml")))
        raise ConfigError(f"prompt file not found: {path}; give a YAML path or a shipped name ({shipped})")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(TASKS)} at the top level")
    return parse_prompts(data, source=str(path))


def parse_prompts(data: dict, source: str = "<dict>") -> dict[str, PromptSet]:
    unknown = sorted(set(map(str, data)) - set(TASKS) - {"templates"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}; expected templates, {', '.join(TASKS)}")
    shared = _templates(data.get("templates", ["{}"]), source, "templates")
    sections: dict[str, PromptSet] = {}
    for task in TASKS:
        if task not in data:
            continue
        section = data[task]
        where = f"{source}: {task}"
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: expected a mapping with 'classes' (and optional 'templates')")
        bad = sorted(set(map(str, section)) - SECTION_KEYS)
        if bad:
            raise ConfigError(f"{where}: unknown key {bad[0]!r}; expected {', '.join(sorted(SECTION_KEYS))}")
        classes = section.get("classes")
        if not isinstance(classes, dict) or not classes:
            raise ConfigError(f"{where}.classes: expected a non-empty mapping of class name -> list of sentences")
        parsed: dict[str, list[str]] = {}
        for name, sentences in classes.items():
            key = f"{where}.classes.{name}"
            if isinstance(sentences, str):
                sentences = [sentences]
            if not isinstance(sentences, list) or not sentences:
                raise ConfigError(f"{key}: empty prompt list; give at least one sentence for class {name!r}")
            for i, s in enumerate(sentences):
                if not isinstance(s, str) or not s.strip():
                    raise ConfigError(f"{key}[{i}]: {s!r} is not a non-empty sentence")
            parsed[str(name)] = [s.strip() for s in sentences]
        templates = _templates(section["templates"], source, f"{task}.templates") if "templates" in section else shared
        negatives = (
            _templates(section["negative_templates"], source, f"{task}.negative_templates")
            if "negative_templates" in section
            else list(DEFAULT_NEGATIVE_TEMPLATES)
        )
        sections[task] = PromptSet(task, parsed, templates, negatives, source)
    if not sections:
        raise ConfigError(f"{source}: no task sections; add one of {', '.join(TASKS)}")
    return sections


def select_prompts(prompts: str | Path | dict[str, PromptSet], task: str, class_names: Sequence[str]) -> PromptSet:
    """The ``task`` section, checked against the benchmark's classes and put in their order."""
    sections = load_prompt_file(prompts) if isinstance(prompts, (str, Path)) else prompts
    source = next(iter(sections.values())).source if sections else str(prompts)
    if task not in sections:
        raise ConfigError(f"{source}: no {task!r} section; this benchmark needs prompts for {task}")
    section = sections[task]
    unknown = [c for c in section.classes if c not in class_names]
    if unknown:
        raise ConfigError(
            f"{source}: {task}: unknown class {unknown[0]!r}; the benchmark's classes are {list(class_names)}"
        )
    missing = [c for c in class_names if c not in section.classes]
    if missing:
        raise ConfigError(f"{source}: {task}: class {missing[0]!r} has no prompt; add sentences for it")
    ordered = {c: section.classes[c] for c in class_names}
    return PromptSet(task, ordered, section.templates, section.negative_templates, source)


def _templates(value, source: str, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key}: expected a non-empty list of templates containing '{{}}'")
    for i, t in enumerate(value):
        if not isinstance(t, str) or "{}" not in t:
            raise ConfigError(f"{source}: {key}[{i}] = {t!r} must be a string containing '{{}}'")
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError) as e:
            raise ConfigError(f"{source}: {key}[{i}] = {t!r} is not a valid template ({e})") from None
    return list(value)
