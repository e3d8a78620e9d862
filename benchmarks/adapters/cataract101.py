"""Deprecated: moved to :mod:`ophclip.datasets.cataract101`; this alias keeps old imports working."""

from ophclip.datasets.cataract101 import (
    IDLE,
    SEP,
    load_cataract101,
    read_phase_names,
    read_transitions,
    read_video_table,
    transitions_to_labels,
)

__all__ = [
    "IDLE", "SEP", "load_cataract101", "read_phase_names", "read_transitions", "read_video_table",
    "transitions_to_labels",
]  # fmt: skip
