"""Turn a :class:`BenchmarkConfig` into labels and a frame source, through the adapter it names.

``ophclip zeroshot``, ``ophclip probe`` and ``ophclip demo`` use this, so every
registered adapter is reachable from a YAML config.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..config import from_dict, to_dict
from ..errors import ConfigError, DataError
from ..prompts import PROMPTS_DIR, resolve_prompt_file
from .config import LEGACY_OPTION_FIELDS, BenchmarkConfig
from .labels import FrameLabels
from .registry import Adapter, LoadedBenchmark, get_adapter
from .sources import check_video_frame_counts

logger = logging.getLogger(__name__)

# The prompt files that ship with OphCLIP (package data), one per benchmark.


def load_benchmark(cfg: BenchmarkConfig) -> LoadedBenchmark:
    """The named adapter's labels and frame source; video frame counts checked against the annotations."""
    adapter = get_adapter(cfg.name)
    options = adapter_options(cfg, adapter)
    if not cfg.root:
        raise ConfigError(f"benchmark.root is empty; give the {cfg.name} dataset folder (or file)")
    bench = adapter.load(cfg, options)
    if cfg.check_frame_counts and cfg.frames_dir is None:
        check_video_frame_counts(bench.phases, cfg.frame_tolerance)
    return bench


def adapter_options(cfg: BenchmarkConfig, adapter: Adapter | None = None):
    """``cfg.options`` as the adapter's options dataclass, with the old flat fields moved in.

    A flat field the adapter does not take is ignored, as it always was (configs used to
    carry every adapter's fields); an unknown key in ``options`` is an error.
    """
    adapter = adapter or get_adapter(cfg.name)
    given = cfg.options if cfg.options is not None else {}
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        if not isinstance(given, adapter.options):
            raise ConfigError(f"benchmark.options is a {type(given).__name__}, but the {cfg.name} adapter takes "
                              f"{adapter.options.__name__}")
        given = to_dict(given)
    if not isinstance(given, dict):
        raise ConfigError(f"benchmark.options = {given!r}; expected a mapping of the {cfg.name} adapter's options")
    data = dict(given)
    takes = {f.name for f in dataclasses.fields(adapter.options)}
    for key in LEGACY_OPTION_FIELDS:
        value = getattr(cfg, key)
        if value is None:
            continue
        if key not in takes:
            logger.info("benchmark.%s does not apply to the %s adapter; ignored", key, cfg.name)
        elif key in data and data[key] != value:
            raise ConfigError(f"benchmark.{key} = {value!r} but benchmark.options.{key} = {data[key]!r}; the first is "
                              f"the old spelling of the second: set one (benchmark.{key}=null drops the old one)")
        else:
            data[key] = value
    return from_dict(adapter.options, data, source=f"the {cfg.name} adapter", prefix="benchmark.options")


def split_videos(labels: FrameLabels, test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A random by-video train/test split for benchmarks without official splits."""
    ids = sorted(labels.video_ids)
    if len(ids) < 2:
        raise DataError(f"{labels.name}: a train/test split needs at least two videos")
    rng = np.random.default_rng(seed)
    n_test = min(len(ids) - 1, max(1, round(test_fraction * len(ids))))
    test = sorted(rng.choice(ids, size=n_test, replace=False).tolist())
    return [v for v in ids if v not in set(test)], test


__all__ = ["PROMPTS_DIR", "LoadedBenchmark", "adapter_options", "load_benchmark", "resolve_prompt_file", "split_videos"]
