"""Benchmark adapters: each reads one dataset's native annotation format into :class:`FrameLabels`.

=================  ===========================================  ===============================
module             format                                       loader
=================  ===========================================  ===============================
cataract101        annotations.csv/phases.csv/videos.csv (;)    :func:`load_cataract101`
cataract1k         case_<id>_annotations_phases.csv segments    :func:`load_cataract1k`
cataract21         per-video ``frame,label`` CSVs               :func:`load_cataract21`
cataracts          ``Frame,Steps`` and tool CSVs                :func:`load_cataracts_steps`, ``_tools``
ophnet             segments + surgery labels (BOM, CRLF)        :func:`load_ophnet_phases`, ``_surgery``
generic            ``path,label`` or ``start,end,label`` CSVs   :func:`load_image_list`, ``load_segment_folder``
synthetic          the ``ophclip synth`` output                 :func:`load_synthetic`
=================  ===========================================  ===============================
"""

from .base import (
    ArraySource,
    FrameFolderSource,
    FrameLabels,
    VideoFileSource,
    VideoLabels,
    check_video_frame_counts,
    sample_frame_indices,
)
from .cataract1k import load_cataract1k
from .cataract21 import load_cataract21
from .cataract101 import load_cataract101
from .cataracts import load_cataracts_steps, load_cataracts_tools
from .generic import ImageListSource, load_image_list, load_segment_folder
from .ophnet import load_ophnet_phases, load_ophnet_surgery
from .synthetic import SyntheticBenchmark, load_synthetic

__all__ = [
    "ArraySource", "FrameFolderSource", "FrameLabels", "ImageListSource", "SyntheticBenchmark", "VideoFileSource",
    "VideoLabels", "check_video_frame_counts", "load_cataract1k", "load_cataract21", "load_cataract101",
    "load_cataracts_steps", "load_cataracts_tools", "load_image_list", "load_ophnet_phases", "load_ophnet_surgery",
    "load_segment_folder", "load_synthetic", "sample_frame_indices",
]  # fmt: skip
