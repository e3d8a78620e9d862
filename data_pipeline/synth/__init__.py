"""The synthetic narrated ophthalmic-surgery dataset: the embedded default data (DESIGN.md).

    from data_pipeline.synth import preset, generate_dataset
    generate_dataset(preset("tiny"), "out/synth_tiny")

Modules, one job each: ``taxonomy`` (surgery types, phases, tools as data), ``plan``
(a video's ground truth), ``anatomy`` and ``render`` (frames), ``narration`` and
``audio`` (script and speech), ``writer`` (mp4, SRT, benchmark-format annotations),
``generate`` (the dataset), ``preview`` (contact sheet and timelines),
``ground_truth_root`` (a dataset root straight from the ground truth, no ASR).
The folder layout is documented in ``generate``.
"""

from __future__ import annotations

import importlib

# Public names -> defining module. Imported lazily (PEP 562) so a worker process that only
# needs ``video`` does not pay for pandas-heavy modules it never uses.
_EXPORTS = {
    "NarrationConfig": "config", "NuisanceConfig": "config", "SynthConfig": "config", "preset": "config",
    "generate_dataset": "generate",
    "build_root_from_ground_truth": "ground_truth_root",
    "dataset_plan": "plan", "plan_video": "plan",
    "render_frames": "render",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
