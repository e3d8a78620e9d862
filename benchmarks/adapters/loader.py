"""Turn a :class:`ophclip.evaluate.BenchmarkConfig` into labels and a frame source.

The CLI (``ophclip zeroshot`` / ``ophclip probe``) and ``ophclip demo`` use this, so
every adapter is reachable from a YAML config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ophclip.errors import ConfigError, DataError
from ophclip.evaluate import BenchmarkConfig

from .base import (
    FrameFolderSource,
    FrameLabels,
    VideoFileSource,
    VideoLabels,
    check_video_frame_counts,
)

logger = logging.getLogger(__name__)

NAMES = ("synthetic", "cataract101", "cataract1k", "cataract21", "cataracts", "ophnet", "generic_segments",
         "generic_images")


@dataclass
class LoadedBenchmark:
    phases: FrameLabels | None
    tools: FrameLabels | None
    surgery: VideoLabels | None
    source: object
    retrieval_texts: dict[str, str] | None = None


PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


def resolve_prompt_file(path: str | Path) -> Path:
    """A prompt file path as given, else a shipped one: ``synthetic`` or ``synthetic.yaml`` -> benchmarks/prompts/."""
    p = Path(path)
    if p.is_file():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    shipped = PROMPTS_DIR / name
    return shipped if shipped.is_file() else p


def _read_class_list(path: str | None) -> list[str] | None:
    """A class list file: one name per line (blank lines and # comments skipped)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: class-name file not found")
    names = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise DataError(f"{p}: class-name file lists no classes")
    return names


def load_benchmark(cfg: BenchmarkConfig) -> LoadedBenchmark:
    from . import (
        cataract1k,
        cataract21,
        cataract101,
        cataracts,
        generic,
        ophnet,
        synthetic,
    )

    if cfg.name not in NAMES:
        raise ConfigError(f"benchmark.name = {cfg.name!r}; expected one of {', '.join(NAMES)}")
    if not cfg.root:
        raise ConfigError(f"benchmark.root is empty; give the {cfg.name} dataset folder (or file)")
    root = Path(cfg.root)
    tools = surgery = None
    texts = None
    if cfg.name == "synthetic":
        # The synthetic set's held-out videos are the default: evaluating on pretraining videos is a leak.
        bench = synthetic.load_synthetic(root, split=cfg.split or "eval")
        meta = synthetic.read_metadata(root)
        texts = dict(zip(meta["video_id"], meta["title"], strict=True)) if "title" in meta else None
        phases, tools, surgery, source = bench.phases, bench.tools, bench.surgery, bench.source
    else:
        if cfg.name == "cataract101":
            phases = cataract101.load_cataract101(root, video_dir=cfg.video_dir)
        elif cfg.name == "cataract1k":
            phases = cataract1k.load_cataract1k(root, video_dir=cfg.video_dir)
        elif cfg.name == "cataract21":
            names = _read_class_list(cfg.class_names_file) or cataract21.PHASE_NAMES
            phases = cataract21.load_cataract21(root, video_dir=cfg.video_dir, class_names=names,
                                                frame_tolerance=cfg.frame_tolerance)
        elif cfg.name == "cataracts":
            phases = cataracts.load_cataracts_steps(root, video_dir=cfg.video_dir, frame_tolerance=cfg.frame_tolerance)
            if cfg.tools_dir:
                tools = cataracts.load_cataracts_tools(cfg.tools_dir, video_dir=cfg.video_dir, half_as=cfg.half_as,
                                                       frame_tolerance=cfg.frame_tolerance, video_ids=phases.video_ids)
        elif cfg.name == "ophnet":
            phases = ophnet.load_ophnet_phases(root, level=cfg.level, split=cfg.split, fps=cfg.annotation_fps,
                                               class_names_file=cfg.class_names_file, video_dir=cfg.video_dir)
            if cfg.surgery_csv:
                surgery = ophnet.load_ophnet_surgery(cfg.surgery_csv, root, split=cfg.split, video_dir=cfg.video_dir)
        elif cfg.name == "generic_segments":
            phases = generic.load_segment_folder(root, fps=cfg.annotation_fps,
                                                 class_names=_read_class_list(cfg.class_names_file),
                                                 video_dir=cfg.video_dir)
        else:  # generic_images
            phases, files = generic.load_image_list(root, class_names=_read_class_list(cfg.class_names_file),
                                                    fps=cfg.annotation_fps)
            return LoadedBenchmark(phases, None, None, generic.ImageListSource(files))
        if cfg.split is not None and cfg.name != "ophnet":
            phases = phases.subset(split=cfg.split)
        source = _frame_source(cfg, phases)
    if cfg.check_frame_counts and cfg.frames_dir is None:
        check_video_frame_counts(phases, cfg.frame_tolerance)
    if cfg.frames_dir is not None:
        source = FrameFolderSource(cfg.frames_dir, cfg.frames_stride)
    return LoadedBenchmark(phases, tools, surgery, source, texts)


def _frame_source(cfg: BenchmarkConfig, phases: FrameLabels):
    if cfg.frames_dir is not None:
        return FrameFolderSource(cfg.frames_dir, cfg.frames_stride)
    paths = {row.video_id: row.source for row in phases.videos.itertuples() if row.source}
    if not paths:
        logger.warning("%s: no video files found (set benchmark.video_dir or benchmark.frames_dir)", phases.name)
    return VideoFileSource(paths)


def split_videos(labels: FrameLabels, test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A random by-video train/test split for benchmarks without official splits."""
    import numpy as np

    ids = sorted(labels.video_ids)
    if len(ids) < 2:
        raise DataError(f"{labels.name}: a train/test split needs at least two videos")
    rng = np.random.default_rng(seed)
    n_test = min(len(ids) - 1, max(1, round(test_fraction * len(ids))))
    test = sorted(rng.choice(ids, size=n_test, replace=False).tolist())
    return [v for v in ids if v not in set(test)], test


__all__ = ["LoadedBenchmark", "load_benchmark", "resolve_prompt_file", "split_videos"]
