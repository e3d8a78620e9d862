"""Generate a whole synthetic dataset: one process-pool job per video, then the dataset tables.

Layout of ``out_dir`` (the contract other stages read)::

    videos/<video_id>.mp4           H.264; narrated videos carry an AAC track with the espeak-ng narration,
                                    silent videos have NO audio stream
    captions/<video_id>.srt         exact narration script (chatter included), narrated videos only
    script.parquet                  video_id, start, end, text, phase_id, is_chatter
    metadata.csv                    video_id, path, title, description, surgery_type, kind, split,
                                    n_frames, fps, width, height, duration_s, c101_id, indication,
                                    narrator (espeak-ng voice@speed)
    annotations/cataract101/        annotations.csv, phases.csv, videos.csv (';'-separated, Cataract-101)
    annotations/tools/<id>.csv      CATARACTS format: Frame + one 0/1 column per tool
    surgery_types.csv, splits.csv   video_id, surgery_type / video_id, split
    synth.json                      config, seed, versions, counts, timing

Frame numbers are 0-based mp4 frame indices; times are seconds from the video start.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import multiprocessing
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ophbase.io import atomic_write_json, atomic_write_parquet

from ..errors import StageError
from . import writer
from .config import SynthConfig
from .plan import VideoPlan, dataset_plan
from .taxonomy import SURGERY_TYPES, all_phases
from .video import generate_video

logger = logging.getLogger(__name__)

SCRIPT_COLUMNS = ["video_id", "start", "end", "text", "phase_id", "is_chatter"]
METADATA_COLUMNS = ["video_id", "path", "title", "description", "surgery_type", "kind", "split", "n_frames",
                    "fps", "width", "height", "duration_s", "c101_id", "indication", "narrator"]


def generate_dataset(cfg: SynthConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Write the dataset described by ``cfg`` into ``out_dir``; return the summary stored in synth.json."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = dataset_plan(cfg)
    results: list[dict] = []
    if cfg.workers > 1 and len(rows) > 1:
        try:
            with ProcessPoolExecutor(max_workers=min(cfg.workers, len(rows)), mp_context=worker_context()) as pool:
                futures = [pool.submit(generate_video, cfg, *row, str(out)) for row in rows]
                for fut in _progress(as_completed(futures), len(futures), progress):
                    results.append(fut.result())
        except BrokenProcessPool as e:
            raise StageError(
                f"a synth worker process died ({e}). Worker processes re-import the main script: run from a file "
                f"with an `if __name__ == '__main__':` guard (not from stdin), or set workers=1"
            ) from None
    else:
        for row in _progress(rows, len(rows), progress):
            results.append(generate_video(cfg, *row, str(out)))
    results.sort(key=lambda r: r["plan"].index)
    summary = write_tables(cfg, out, results)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 2)
    # CPU seconds spent rendering and encoding, summed over workers: wall time / workers on an idle machine.
    summary["video_cpu_s"] = round(sum(r["cpu_s"] for r in results), 2)
    atomic_write_json(out / "synth.json", summary)
    logger.info("synthetic dataset: %d videos, %d frames, %d sentences in %.1f s -> %s",
                summary["counts"]["videos"], summary["counts"]["frames"], summary["counts"]["sentences"],
                summary["elapsed_s"], out)
    return summary


def worker_context() -> multiprocessing.context.BaseContext:
    """Forkserver where available: safe with threads in the parent (torch, pytest), and the server
    imports the worker module once instead of once per worker and per pool (spawn)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["data_pipeline.synth.video", "data_pipeline.synth.ground_truth_root"])
        return ctx
    return multiprocessing.get_context("spawn")


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    return tqdm(it, total=total, desc="synth videos", unit="video")


def write_tables(cfg: SynthConfig, out: Path, results: list[dict]) -> dict:
    plans: list[VideoPlan] = [r["plan"] for r in results]
    meta = pd.DataFrame([dict(
        video_id=p.video_id, path=r["rel"], title=p.title, description=p.description, surgery_type=p.surgery,
        kind=p.kind, split=p.split, n_frames=p.n_frames, fps=float(p.fps), width=p.width, height=p.height,
        duration_s=p.duration_s, c101_id=p.c101_id, indication=p.indication, narrator=r["narrator"],
    ) for p, r in zip(plans, results, strict=False)], columns=METADATA_COLUMNS)
    writer.atomic_write_text(out / "metadata.csv", meta.to_csv(index=False))
    writer.atomic_write_text(out / "surgery_types.csv", meta[["video_id", "surgery_type"]].to_csv(index=False))
    writer.atomic_write_text(out / "splits.csv", meta[["video_id", "split"]].to_csv(index=False))
    script = pd.DataFrame([row for r in results for row in r["script"]], columns=SCRIPT_COLUMNS)
    script = script.astype({"video_id": "string", "start": "float64", "end": "float64", "text": "string",
                            "phase_id": "int64", "is_chatter": "bool"})
    atomic_write_parquet(out / "script.parquet", script)
    c101 = out / "annotations" / "cataract101"
    writer.write_semicolon_csv(c101 / "phases.csv", ("Phase", "Meaning"), ((p.id, p.name) for p in all_phases()))
    writer.write_semicolon_csv(c101 / "videos.csv", ("VideoID", "Frames", "FPS", "Surgeon", "Experience"),
                               ((p.c101_id, p.n_frames, p.fps, p.surgeon, p.experience) for p in plans))
    writer.write_semicolon_csv(c101 / "annotations.csv", ("VideoID", "FrameNo", "Phase"),
                               ((p.c101_id, s.start, s.phase_id) for p in plans for s in p.segments))
    counts = {
        "videos": len(plans),
        "frames": int(sum(p.n_frames for p in plans)),
        "duration_s": round(float(sum(p.duration_s for p in plans)), 2),
        "by_split": meta["split"].value_counts().sort_index().to_dict(),
        "by_kind": meta["kind"].value_counts().sort_index().to_dict(),
        "by_surgery_type": meta["surgery_type"].value_counts().sort_index().to_dict(),
        "sentences": len(script),
        "chatter_sentences": int(script["is_chatter"].sum()),
        "phase_occurrences": int(sum(len(p.segments) for p in plans)),
        "mb_on_disk": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20, 2),
    }
    return {
        "config": _plain(dataclasses.asdict(cfg)),
        "seed": cfg.seed,
        "versions": versions(),
        "counts": counts,
        "surgery_types": {k: [p.name for p in s.phases] for k, s in SURGERY_TYPES.items()},
        "notes": {
            "frame_numbers": "0-based indices of the mp4's decoded frames; frame k is shown at k / fps seconds",
            "silent_videos": "silent videos have no audio stream",
            "tools_csv": "CATARACTS format, comma-separated, Frame + one 0/1 column per tool",
            "cataract101": "';'-separated; annotations.csv rows are phase transitions; VideoID = metadata c101_id",
        },
    }


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("av", "pillow", "pandas", "scipy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        out["espeak-ng"] = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                                          timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["espeak-ng"] = "not found"
    return out
