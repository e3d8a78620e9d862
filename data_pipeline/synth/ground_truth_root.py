"""A dataset root (DESIGN.md § Data contracts) built straight from the generator's ground truth.

No ASR and no LLM: segments are the exact script, clip texts are the narration
itself, and video summaries come from the known surgery metadata. Trainers and
evaluators can start from this root before (or instead of) the real pipeline, and the
pipeline's output can be scored against it.

    build_root_from_ground_truth("out/synth_tiny", "out/root_tiny", fps=4.0, short_side=64)
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ophbase.io import atomic_write_json, sha256_file

from ..errors import InputError
from ..frame_cache import cache_video, write_index
from ..manifests import NARRATED, empty_table, write_manifest
from .generate import worker_context
from .taxonomy import SURGERY_TYPES

logger = logging.getLogger(__name__)

SCRIPT_SOURCE = "script"
GROUND_TRUTH_MODEL = "ground-truth"


def build_root_from_ground_truth(synth_dir: str | Path, root: str | Path, fps: float = 4.0, short_side: int = 64,
                                 workers: int = 2, min_clip_s: float = 4.0, max_merge_gap_s: float = 6.0,
                                 progress: bool = True) -> dict:
    """Write a dataset root for every video of ``synth_dir`` (eval videos too, marked in ``split``).

    Args:
        synth_dir: output of ``ophclip synth`` (metadata.csv, script.parquet, videos/).
        root: the dataset root to write (created; existing tables are replaced).
        fps, short_side: frame-cache rate and size (frames are decoded once, here).
        workers: processes decoding videos into the frame cache.
        min_clip_s: consecutive non-chatter sentences of the same phase are merged until a clip lasts this long;
            a clip still shorter is widened symmetrically around its sentences (within the video).
        max_merge_gap_s: sentences further apart than this are not merged.
    Returns the run summary also written to ``root/run.json``.
    """
    t0 = time.perf_counter()
    synth_dir, root = Path(synth_dir), Path(root)
    meta = _read_csv(synth_dir / "metadata.csv")
    script = _read_script(synth_dir / "script.parquet")
    root.mkdir(parents=True, exist_ok=True)

    videos = _videos_table(synth_dir, meta)
    write_manifest(root, "videos", videos)
    segments = _segments_table(script)
    write_manifest(root, "segments", segments)
    clips = _clips_table(script, meta, min_clip_s, max_merge_gap_s)
    write_manifest(root, "clips", clips)
    texts = _video_texts_table(meta[meta["kind"] == NARRATED])
    write_manifest(root, "video_texts", texts)
    write_manifest(root, "quarantine", empty_table("quarantine"))
    index_rows = _cache_frames(synth_dir, root, videos, fps, short_side, workers, progress)
    write_index(root / "frames", index_rows)

    summary = {
        "source": str(synth_dir.resolve()),
        "builder": "data_pipeline.synth.ground_truth_root",
        "config": {"fps": fps, "short_side": short_side, "min_clip_s": min_clip_s, "max_merge_gap_s": max_merge_gap_s},
        "model_ids": {"asr": SCRIPT_SOURCE, "rewrite": "none", "summarize": GROUND_TRUTH_MODEL},
        "synth": _synth_json(synth_dir),
        "counts": {"videos": len(videos), "segments": len(segments), "clips": len(clips),
                   "video_texts": len(texts), "quarantine": 0, "cached_frames": int(sum(r["n_frames"] for r in index_rows))},
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(root / "run.json", summary)
    logger.info("ground-truth root %s: %d videos, %d clips, %d cached frames in %.1f s", root, len(videos),
                len(clips), summary["counts"]["cached_frames"], summary["elapsed_s"])
    return summary


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path} not found: {path.parent} is not a synthetic dataset (run `ophclip synth` first)")
    return pd.read_csv(path, dtype={"video_id": "string"}, keep_default_na=False)


def _read_script(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path} not found: {path.parent} is not a synthetic dataset (run `ophclip synth` first)")
    return pd.read_parquet(path).sort_values(["video_id", "start"], kind="stable").reset_index(drop=True)


def _videos_table(synth_dir: Path, meta: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for m in meta.itertuples(index=False):
        path = (synth_dir / m.path).resolve()
        if not path.is_file():
            raise InputError(f"{synth_dir / 'metadata.csv'}: video {m.video_id} lists {m.path}, which does not exist; "
                             f"regenerate the dataset")
        rows.append(dict(
            video_id=m.video_id, path=str(path), sha256=sha256_file(path), duration_s=float(m.duration_s),
            fps=float(m.fps), width=int(m.width), height=int(m.height), has_audio=m.kind == NARRATED, kind=m.kind,
            title=m.title, description=m.description, status="ok", error="", split=m.split,
            surgery_type=m.surgery_type, n_frames=int(m.n_frames), c101_id=int(m.c101_id),
        ))
    return pd.DataFrame(rows)


def _segments_table(script: pd.DataFrame) -> pd.DataFrame:
    seg = script.copy()
    seg["seg_id"] = [f"{v}_s{i:03d}" for v, i in zip(seg["video_id"], seg.groupby("video_id").cumcount(), strict=False)]
    seg["avg_logprob"] = 0.0
    seg["no_speech_prob"] = 0.0
    seg["source"] = SCRIPT_SOURCE
    return seg[["video_id", "seg_id", "start", "end", "text", "avg_logprob", "no_speech_prob", "source",
                "phase_id", "is_chatter"]]


def _clips_table(script: pd.DataFrame, meta: pd.DataFrame, min_clip_s: float, max_gap_s: float) -> pd.DataFrame:
    duration = dict(zip(meta["video_id"], meta["duration_s"].astype(float), strict=False))
    rows = []
    for vid, sents in script[~script["is_chatter"]].groupby("video_id", sort=True):
        groups: list[list] = []
        for s in sents.itertuples(index=False):
            cur = groups[-1] if groups else None
            # Merge only within one phase, so a clip's text describes what its frames show.
            if cur and cur[-1].end - cur[0].start < min_clip_s and s.start - cur[-1].end <= max_gap_s \
                    and s.phase_id == cur[-1].phase_id:
                cur.append(s)
            else:
                groups.append([s])
        for k, g in enumerate(groups):
            start, end = g[0].start, g[-1].end
            if end - start < min_clip_s:  # widen around the speech, inside the video
                pad = (min_clip_s - (end - start)) / 2
                start, end = max(0.0, start - pad), min(duration[vid], end + pad)
            narration = " ".join(s.text.rstrip(".") + "." for s in g)
            rows.append(dict(clip_id=f"{vid}_c{k:03d}", video_id=vid, start=float(start), end=float(end),
                             narration=narration, text=narration, rewrite_model="none",
                             phase_id=int(g[0].phase_id), n_sentences=len(g)))
    return pd.DataFrame(rows, columns=["clip_id", "video_id", "start", "end", "narration", "text", "rewrite_model",
                                       "phase_id", "n_sentences"])


def video_summary(surgery_type: str, indication: str, title: str) -> tuple[dict, str]:
    """The structured summary of a title, from known metadata (what the LLM summariser should produce)."""
    st = SURGERY_TYPES[surgery_type]
    summary = {"procedure": st.name, "indication": indication, "title": title,
               "steps": [p.name for p in st.phases]}
    text = f"{st.name} for {indication}. Steps: " + ", ".join(p.name.lower() for p in st.phases) + "."
    return summary, text


def _video_texts_table(meta: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for m in meta.itertuples(index=False):
        summary, text = video_summary(m.surgery_type, m.indication, m.title)
        rows.append(dict(video_id=m.video_id, title=m.title, summary_json=json.dumps(summary), summary_text=text,
                         summarize_model=GROUND_TRUTH_MODEL, split=m.split))
    return pd.DataFrame(rows, columns=["video_id", "title", "summary_json", "summary_text", "summarize_model", "split"])


def _cache_one(path: str, out_file: str, fps: float, short_side: int) -> tuple[int, int, int]:
    array = cache_video(path, out_file, fps=fps, short_side=short_side)
    return int(array.shape[0]), int(array.shape[1]), int(array.shape[2])


def _cache_frames(synth_dir: Path, root: Path, videos: pd.DataFrame, fps: float, short_side: int, workers: int,
                  progress: bool) -> list[dict]:
    frames_dir = root / "frames"
    jobs = [(r.path, str(frames_dir / f"{r.video_id}.npy"), fps, short_side) for r in videos.itertuples(index=False)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
            shapes = list(_maybe_progress(pool.map(_cache_one, *zip(*jobs, strict=False)), len(jobs), progress))
    else:
        shapes = [_cache_one(*job) for job in _maybe_progress(jobs, len(jobs), progress)]
    return [dict(video_id=r.video_id, file=f"{r.video_id}.npy", n_frames=n, fps=float(fps), height=h, width=w,
                 source_sha256=r.sha256) for r, (n, h, w) in zip(videos.itertuples(index=False), shapes, strict=False)]


def _maybe_progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    return tqdm(it, total=total, desc="frame cache", unit="video")


def _synth_json(synth_dir: Path) -> dict:
    path = synth_dir / "synth.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {"seed": data.get("seed"), "counts": data.get("counts"), "versions": data.get("versions")}
