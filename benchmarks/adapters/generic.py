"""Deprecated: moved to :mod:`ophclip.datasets.generic`; this alias keeps old imports working."""

from ophclip.datasets.generic import (
    ImageListSource,
    load_image_list,
    load_segment_folder,
    read_segment_csv,
)

__all__ = ["ImageListSource", "load_image_list", "load_segment_folder", "read_segment_csv"]
