"""Deprecated: moved to :mod:`ophclip.datasets.cataracts`; this alias keeps old imports working."""

from ophclip.datasets.cataracts import (
    STEP_NAMES,
    TOOL_NAMES,
    HalfAs,
    load_cataracts_steps,
    load_cataracts_tools,
    read_step_csv,
    read_tool_csv,
)

__all__ = [
    "STEP_NAMES", "TOOL_NAMES", "HalfAs", "load_cataracts_steps", "load_cataracts_tools", "read_step_csv",
    "read_tool_csv",
]  # fmt: skip
