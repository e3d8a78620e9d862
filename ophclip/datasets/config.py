"""The ``benchmark`` section of the evaluation configs: which dataset, where, and its adapter's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Flat fields that were adapter options before adapters had a section of their own.
LEGACY_OPTION_FIELDS = ("tools_dir", "surgery_csv", "class_names_file", "level", "half_as", "annotation_fps")


@dataclass
class BenchmarkConfig:
    """Which benchmark to read and where (data only; :func:`ophclip.datasets.load_benchmark` acts on it).

    ``name`` is a registered adapter (:func:`ophclip.datasets.adapter_names`: synthetic,
    cataract101, cataract1k, cataract21, cataracts, ophnet, generic_segments, generic_images).
    ``root`` is the dataset folder (or, for ophnet, the segment CSV; for generic_images, the
    path,label CSV). ``options`` are the adapter's own settings, checked against its options
    dataclass when the benchmark is loaded (``benchmark.options.tools_dir=...``); from Python
    an instance of that dataclass may be given instead of the mapping.
    """

    name: str = "synthetic"
    root: str = ""
    split: str | None = None  # videos of this split only; null: synthetic -> eval, others -> all videos
    video_dir: str | None = None  # decode frames from these videos (default: the benchmark's own)
    frames_dir: str | None = None  # or read extracted frames: <frames_dir>/<video_id>/*.jpg|png
    frames_stride: int = 1  # native frames between two extracted frames
    frame_tolerance: int = 1  # video vs annotation frame-count difference allowed
    check_frame_counts: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the adapter's section (its options dataclass)
    # Configs written before ``options`` existed set these flat; each one set moves into ``options``
    # when the benchmark is loaded (ophclip.datasets.loader.adapter_options). Prefer ``options``.
    tools_dir: str | None = None  # cataracts
    surgery_csv: str | None = None  # ophnet
    class_names_file: str | None = None  # cataract21, ophnet, generic_*
    level: str | None = None  # ophnet
    half_as: str | None = None  # cataracts
    annotation_fps: float | None = None  # ophnet, generic_*
