"""Deprecated: moved to :mod:`ophclip.datasets.cataract21`; this alias keeps old imports working."""

from ophclip.datasets.cataract21 import (
    PHASE_NAMES,
    load_cataract21,
    read_frame_label_csv,
)

__all__ = ["PHASE_NAMES", "load_cataract21", "read_frame_label_csv"]
