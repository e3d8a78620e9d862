"""Deprecated: moved to :mod:`ophclip.datasets.loader` (adapters by name: :mod:`ophclip.datasets.registry`).

This alias keeps old imports working.
"""

from ophclip.datasets import LoadedBenchmark, adapter_names
from ophclip.datasets.loader import PROMPTS_DIR, load_benchmark, resolve_prompt_file, split_videos

NAMES = tuple(adapter_names())  # was the if/elif's list; now every registered adapter

__all__ = [
    "NAMES", "PROMPTS_DIR", "LoadedBenchmark", "load_benchmark", "resolve_prompt_file", "split_videos",
]  # fmt: skip
