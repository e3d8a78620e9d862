"""Dataset adapters: each reads one dataset's native annotation format into :class:`FrameLabels`.

==================  ===========  ==========================================  =====================================
adapter name        module       format                                      loader
==================  ===========  ==========================================  =====================================
synthetic           synthetic    the ``ophclip synth`` output                :func:`load_synthetic`
cataract101         cataract101  annotations.csv/phases.csv/videos.csv (;)   :func:`load_cataract101`
cataract1k          cataract1k   case_<id>_annotations_phases.csv segments   :func:`load_cataract1k`
cataract21          cataract21   per-video ``frame,label`` CSVs              :func:`load_cataract21`
cataracts           cataracts    ``Frame,Steps`` and tool CSVs               :func:`load_cataracts_steps`, ``_tools``
ophnet              ophnet       segments + surgery labels (BOM, CRLF)       :func:`load_ophnet_phases`, ``_surgery``
generic_segments    generic      ``start,end,label`` CSVs per video          :func:`load_segment_folder`
generic_images      generic      a ``path,label`` CSV of frame images        :func:`load_image_list`
==================  ===========  ==========================================  =====================================

Each module registers its adapter by name (:func:`register_adapter`) with a dataclass of
its own options; :func:`load_benchmark` turns a :class:`BenchmarkConfig` (``benchmark:``
in configs/eval_*.yaml) into labels and a frame source through the adapter it names.
The shared pieces: :mod:`.labels` (the label types), :mod:`.parsing` (annotation files),
:mod:`.sources` (where frames come from).
"""

# Each adapter module registers its adapter when imported: importing them all here makes
# every adapter known as soon as the package is.
from .cataract1k import load_cataract1k
from .cataract21 import load_cataract21
from .cataract101 import load_cataract101
from .cataracts import load_cataracts_steps, load_cataracts_tools
from .config import BenchmarkConfig
from .generic import ImageListSource, load_image_list, load_segment_folder
from .labels import FrameLabels, VideoLabels, sample_frame_indices
from .loader import adapter_options, load_benchmark, resolve_prompt_file, split_videos
from .ophnet import load_ophnet_phases, load_ophnet_surgery
from .registry import (
    Adapter,
    LoadedBenchmark,
    NoOptions,
    adapter_names,
    from_videos,
    get_adapter,
    register_adapter,
)
from .sources import ArraySource, FrameFolderSource, FrameSource, VideoFileSource, check_video_frame_counts
from .synthetic import SyntheticBenchmark, load_synthetic

__all__ = [
    "Adapter", "ArraySource", "BenchmarkConfig", "FrameFolderSource", "FrameLabels", "FrameSource",
    "ImageListSource", "LoadedBenchmark", "NoOptions", "SyntheticBenchmark", "VideoFileSource", "VideoLabels",
    "adapter_names", "adapter_options", "check_video_frame_counts", "from_videos", "get_adapter",
    "load_benchmark", "load_cataract1k", "load_cataract21", "load_cataract101", "load_cataracts_steps",
    "load_cataracts_tools", "load_image_list", "load_ophnet_phases", "load_ophnet_surgery", "load_segment_folder",
    "load_synthetic", "register_adapter", "resolve_prompt_file", "sample_frame_indices", "split_videos",
]  # fmt: skip
