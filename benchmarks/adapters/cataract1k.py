"""Deprecated: moved to :mod:`ophclip.datasets.cataract1k`; this alias keeps old imports working."""

from ophclip.datasets.cataract1k import (
    COLUMNS,
    FILE_RE,
    IDLE,
    PHASE_NAMES,
    load_cataract1k,
    read_phase_segments,
)

__all__ = ["COLUMNS", "FILE_RE", "IDLE", "PHASE_NAMES", "load_cataract1k", "read_phase_segments"]
