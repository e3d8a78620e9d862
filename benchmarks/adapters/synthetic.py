"""Deprecated: moved to :mod:`ophclip.datasets.synthetic`; this alias keeps old imports working."""

from ophclip.datasets.synthetic import (
    METADATA_COLUMNS,
    SyntheticBenchmark,
    load_synthetic,
    read_metadata,
    surgery_phase_classes,
)

__all__ = [
    "METADATA_COLUMNS", "load_synthetic", "read_metadata", "surgery_phase_classes", "SyntheticBenchmark",
]  # fmt: skip
