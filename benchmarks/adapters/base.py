"""Deprecated: split into :mod:`ophclip.datasets.labels` (the label types), :mod:`ophclip.datasets.parsing`
(annotation files) and :mod:`ophclip.datasets.sources` (frame sources); this alias keeps old imports working.
"""

from __future__ import annotations

from pathlib import Path

from ophbase.video import probe_video as _probe_video
from ophclip.datasets.labels import (
    MAX_FRAMES,
    FrameLabels,
    VideoLabels,
    check_length,
    sample_frame_indices,
    segments_to_frame_labels,
)
from ophclip.datasets.parsing import (
    annotation_files,
    check_annotation_length,
    check_increasing,
    check_within,
    float_column,
    int_column,
    line_of,
    lookup_labels,
    natural_key,
    parse_float,
    parse_int,
    per_frame_labels,
    read_frame_column,
    read_table,
)
from ophclip.datasets.sources import (
    IMAGE_SUFFIXES,
    ArraySource,
    FrameFolderSource,
    FrameSource,
    VideoFileSource,
    check_video_frame_counts,
    frame_count_of,
    stack_frames,
    video_files,
)


def probe_video(path: str | Path) -> tuple[int, float]:
    """Deprecated: (frame count, fps) from the container header; use :func:`ophbase.video.probe_video`."""
    info = _probe_video(path)
    return info.n_frames, info.fps


__all__ = [
    "IMAGE_SUFFIXES", "MAX_FRAMES", "ArraySource", "FrameFolderSource", "FrameLabels", "FrameSource",
    "VideoFileSource", "VideoLabels", "annotation_files", "check_annotation_length", "check_increasing",
    "check_length", "check_video_frame_counts", "check_within", "float_column", "frame_count_of", "int_column",
    "line_of", "lookup_labels", "natural_key", "parse_float", "parse_int", "per_frame_labels", "probe_video",
    "read_frame_column", "read_table", "sample_frame_indices", "segments_to_frame_labels", "stack_frames",
    "video_files",
]  # fmt: skip
