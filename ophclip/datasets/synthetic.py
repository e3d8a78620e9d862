"""The synthetic narrated-surgery set (``ophclip synth``) through the real adapters.

It writes phases in Cataract-101's format and tools in CATARACTS' format (frame
numbers of the mp4, from 0), so this module only maps ids and picks the split:

    <synth_dir>/metadata.csv                      video_id, path, c101_id, split, surgery_type, ...
    <synth_dir>/annotations/cataract101/*.csv     -> :func:`load_cataract101`
    <synth_dir>/annotations/tools/<video_id>.csv  -> :func:`load_cataracts_tools`
    <synth_dir>/videos/<video_id>.mp4

Surgery type is a video-level, single-label task over the types in metadata.csv.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_pipeline.synth.taxonomy import SURGERY_TYPES

from ..errors import DataError
from .cataract101 import load_cataract101
from .cataracts import load_cataracts_tools
from .config import BenchmarkConfig
from .labels import FrameLabels, VideoLabels
from .parsing import int_column, line_of, read_table
from .registry import LoadedBenchmark, NoOptions, register_adapter
from .sources import FrameFolderSource, VideoFileSource

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ["video_id", "path", "surgery_type", "split", "c101_id"]


@dataclass
class SyntheticBenchmark:
    phases: FrameLabels
    tools: FrameLabels | None
    surgery: VideoLabels
    source: VideoFileSource


def read_metadata(synth_dir: str | Path) -> pd.DataFrame:
    path = Path(synth_dir) / "metadata.csv"
    df = read_table(path, METADATA_COLUMNS, what="synthetic metadata.csv")
    df["c101_id"] = int_column(df, "c101_id", path)
    df["line"] = [line_of(i) for i in range(len(df))]
    return df


def surgery_phase_classes(class_names: list[str]) -> dict[str, list[str]]:
    """Surgery type -> its phases among ``class_names``, plus the classes no surgery owns (Idle)."""
    owned = {p.name for st in SURGERY_TYPES.values() for p in st.phases}
    shared = [c for c in class_names if c not in owned]
    return {key: [c for c in class_names if c in {p.name for p in st.phases}] + shared
            for key, st in SURGERY_TYPES.items()}


def load_synthetic(synth_dir: str | Path, split: str | None = "eval", with_tools: bool = True) -> SyntheticBenchmark:
    """Phases, tools and surgery types of the videos in ``split`` (None: all videos)."""
    synth_dir = Path(synth_dir)
    meta = read_metadata(synth_dir)
    # Every surgery type of the set is a class, also those absent from this split.
    types = sorted(set(meta["surgery_type"]))
    if split is not None:
        meta = meta[meta["split"] == split]
        if meta.empty:
            raise DataError(f"{synth_dir / 'metadata.csv'}: no videos in split {split!r}")
    id_map = dict(zip(meta["c101_id"], meta["video_id"], strict=False))
    phases_all = load_cataract101(synth_dir / "annotations" / "cataract101", video_ids=id_map, name="synthetic_phases")
    # load_cataract101 reads every video of the file; keep the split's, in metadata order.
    missing = [v for v in meta["video_id"] if v not in phases_all.labels]
    if missing:
        raise DataError(f"{synth_dir / 'annotations/cataract101/annotations.csv'}: no phase rows for {missing[:5]}")
    unmapped = [v for v in phases_all.video_ids if v not in set(meta["video_id"])]
    phases_all.videos = phases_all.videos[~phases_all.videos["video_id"].isin(unmapped)]
    phases_all.labels = {k: v for k, v in phases_all.labels.items() if k not in unmapped}
    paths = {row.video_id: synth_dir / row.path for row in meta.itertuples()}
    phases = phases_all.subset(list(meta["video_id"]))
    phases.videos["split"] = list(meta["split"])
    phases.videos["source"] = [str(paths[v]) for v in phases.video_ids]
    phases.videos["group"] = list(meta["surgery_type"])
    phases.group_classes = surgery_phase_classes(phases.class_names)

    tools = None
    if with_tools:
        tools = load_cataracts_tools(synth_dir / "annotations" / "tools", frame_base=0, video_ids=list(meta["video_id"]),
                                     name="synthetic_tools")
        for row in tools.videos.itertuples():
            expected = int(phases.video(row.video_id)["n_frames"])
            if row.n_frames != expected:
                raise DataError(f"{row.annotation}: video {row.video_id!r} annotates {row.n_frames} frames of tools "
                                f"but its phase annotations say {expected}; regenerate the synthetic set")
        tools.videos["fps"] = list(phases.videos["fps"])
        tools.videos["split"] = list(meta["split"])
        tools.videos["source"] = list(phases.videos["source"])

    targets = np.zeros((len(meta), len(types)), dtype=np.int8)
    targets[np.arange(len(meta)), [types.index(t) for t in meta["surgery_type"]]] = 1
    videos = pd.DataFrame({"video_id": list(meta["video_id"]), "split": list(meta["split"]),
                           "source": [str(paths[v]) for v in meta["video_id"]]})
    surgery = VideoLabels("synthetic_surgery", types, videos, targets, multi_label=False)
    return SyntheticBenchmark(phases, tools, surgery, VideoFileSource(paths))


@register_adapter("synthetic")
def synthetic_benchmark(cfg: BenchmarkConfig, options: NoOptions) -> LoadedBenchmark:
    """``root`` is the ``ophclip synth`` folder; titles become the retrieval texts."""
    # The held-out videos are the default split: evaluating on pretraining videos is a leak.
    bench = load_synthetic(cfg.root, split=cfg.split or "eval")
    meta = read_metadata(cfg.root)
    texts = dict(zip(meta["video_id"], meta["title"], strict=True)) if "title" in meta else None
    source = FrameFolderSource(cfg.frames_dir, cfg.frames_stride) if cfg.frames_dir is not None else bench.source
    return LoadedBenchmark(bench.phases, bench.tools, bench.surgery, source, texts)
