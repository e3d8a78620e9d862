"""Dataset adapters by name: each adapter module registers its loader with :func:`register_adapter`.

A benchmark config names its adapter (``benchmark.name``); :func:`get_adapter` looks it
up, so adding a dataset is adding a module, with no list of names to extend elsewhere::

    @dataclass
    class MyOptions:
        label_column: str = "phase"

    @register_adapter("my_dataset", MyOptions)
    def my_dataset(cfg: BenchmarkConfig, options: MyOptions) -> LoadedBenchmark:
        phases = read_my_dataset(cfg.root, options.label_column).subset(split=cfg.split)
        return from_videos(cfg, phases)

The loader gets the benchmark config (its common fields: ``root``, ``split``,
``video_dir``, ``frames_dir``, ...) and the adapter's own options, already validated
against the options dataclass (``benchmark.options`` in YAML).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .labels import FrameLabels, VideoLabels
from .sources import frame_source

if TYPE_CHECKING:
    from .config import BenchmarkConfig


@dataclass
class LoadedBenchmark:
    """What an adapter returns: labels per task (None when the dataset has none) and the frames' source."""

    phases: FrameLabels | None
    tools: FrameLabels | None
    surgery: VideoLabels | None
    source: object
    retrieval_texts: dict[str, str] | None = None  # video_id -> text, for video <-> text retrieval


@dataclass
class NoOptions:
    """The options of an adapter that needs none beyond the benchmark's common fields."""


@dataclass(frozen=True)
class Adapter:
    name: str
    options: type  # a dataclass; ``benchmark.options`` is validated against it
    load: Callable[[BenchmarkConfig, Any], LoadedBenchmark]


_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(name: str, options: type = NoOptions) -> Callable:
    """Decorator: ``load(cfg, options) -> LoadedBenchmark`` becomes the adapter called ``name``."""
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise TypeError(f"adapter {name!r}: options must be a dataclass type, got {options!r}")

    def register(load: Callable) -> Callable:
        known = _ADAPTERS.get(name)
        # Re-registering the same function (a module reloaded) is harmless; another one is a name clash.
        if known is not None and _origin(known.load) != _origin(load):
            raise ValueError(f"adapter {name!r} is already registered by {_origin(known.load)}")
        _ADAPTERS[name] = Adapter(name, options, load)
        return load

    return register


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"benchmark.name = {name!r}; known adapters: {', '.join(adapter_names())}") from None


def adapter_names() -> list[str]:
    return sorted(_ADAPTERS)


def from_videos(cfg: BenchmarkConfig, phases: FrameLabels, tools: FrameLabels | None = None,
                surgery: VideoLabels | None = None) -> LoadedBenchmark:
    """A benchmark whose frames come from its videos, or from ``benchmark.frames_dir`` when that is set."""
    return LoadedBenchmark(phases, tools, surgery, frame_source(phases, cfg.frames_dir, cfg.frames_stride))


def _origin(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
