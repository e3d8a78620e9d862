"""Deprecated: moved to :mod:`ophclip.datasets.ophnet`; this alias keeps old imports working."""

from ophclip.datasets.ophnet import (
    SEGMENT_COLUMNS,
    SPLITS,
    load_ophnet_phases,
    load_ophnet_surgery,
    read_class_names,
    read_segments,
    read_surgery_labels,
)

__all__ = [
    "SEGMENT_COLUMNS", "SPLITS", "load_ophnet_phases", "load_ophnet_surgery", "read_class_names",
    "read_segments", "read_surgery_labels",
]  # fmt: skip
