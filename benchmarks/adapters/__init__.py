"""Deprecated: the dataset adapters moved to :mod:`ophclip.datasets`; this alias keeps old imports working.

``benchmarks.adapters.<module>`` still imports (each is an alias of ``ophclip.datasets.<module>``).
"""

from ophclip.datasets import (
    ArraySource,
    FrameFolderSource,
    FrameLabels,
    ImageListSource,
    SyntheticBenchmark,
    VideoFileSource,
    VideoLabels,
    check_video_frame_counts,
    load_cataract1k,
    load_cataract21,
    load_cataract101,
    load_cataracts_steps,
    load_cataracts_tools,
    load_image_list,
    load_ophnet_phases,
    load_ophnet_surgery,
    load_segment_folder,
    load_synthetic,
    sample_frame_indices,
)

__all__ = [
    "ArraySource", "FrameFolderSource", "FrameLabels", "ImageListSource", "SyntheticBenchmark", "VideoFileSource",
    "VideoLabels", "check_video_frame_counts", "load_cataract1k", "load_cataract21", "load_cataract101",
    "load_cataracts_steps", "load_cataracts_tools", "load_image_list", "load_ophnet_phases", "load_ophnet_surgery",
    "load_segment_folder", "load_synthetic", "sample_frame_indices",
]  # fmt: skip
