"""Measure the pipeline against the synthetic set's ground truth (its script is the reference).

    ophclip pipeline run configs/pipeline_fast.yaml input.videos=out/synth/metadata.csv output=out/root
    python -m data_pipeline.evaluate_pipeline --synth out/synth --root out/root [--rewrite-clips 5]

Metrics:

* ``wer_before`` / ``wer_after``: word error rate of the kept narration (sentences the relevance
  filter kept) against the script's non-chatter sentences, before and after lexicon correction;
  ``wer_all_before`` / ``wer_all_after`` do the same for every ASR sentence against the whole script;
* ``start_mae_median_s``: median |start - script start| over script sentences, each matched to
  the pipeline sentence it overlaps most;
* ``narrated_silent_accuracy``: videos.parquet ``kind`` against metadata.csv ``kind``;
* ``chatter_precision`` / ``chatter_recall``: the relevance filter as a chatter detector, each
  pipeline sentence labelled by the script sentence it overlaps most;
* ``asr_audio_s_per_wall_s``: from the transcribe records; ``rewrite_clips_per_s``: a timed
  rewrite of ``--rewrite-clips`` clips with the configured LLM (fresh cache), with its fallback rate.

Printed as a table and written as JSON (``--json``, default ``<root>/pipeline_eval.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import pandas as pd

from ophbase.io import atomic_write_json

from .cache import JsonCache
from .config import PipelineConfig
from .errors import InputError
from .lexicon import Lexicon
from .llm import load_llm
from .manifests import read_manifest
from .rewrite import Rewriter

logger = logging.getLogger(__name__)

_NORMALIZE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.SubstituteRegexes({r"[-/]": " "}), jiwer.RemovePunctuation(),
                            jiwer.RemoveMultipleSpaces(), jiwer.Strip()])


def _norm(text: str) -> str:
    return _NORMALIZE(text)


def _wer(refs: list[str], hyps: list[str]) -> float:
    pairs = [(_norm(r), _norm(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _best_match(start: float, end: float, candidates: pd.DataFrame) -> int | None:
    if candidates.empty:
        return None
    ov = np.array([_overlap(start, end, s, e) for s, e in zip(candidates["start"], candidates["end"], strict=True)])
    k = int(ov.argmax())
    return candidates.index[k] if ov[k] > 0 else None


def evaluate(synth_dir: str | Path, root: str | Path) -> dict:
    synth_dir, root = Path(synth_dir), Path(root)
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": str})
    script = pd.read_parquet(synth_dir / "script.parquet")
    videos = read_manifest(root, "videos")
    sentences_path = root / "sentences.parquet"
    if not sentences_path.is_file():
        raise InputError(f"{sentences_path} not found; run the pipeline on {synth_dir} first")
    sents = pd.read_parquet(sentences_path)
    # Score only the videos this root was built from (a run may cover a subset of the synthetic set).
    meta = meta[meta["video_id"].isin(videos["video_id"])]
    script = script[script["video_id"].isin(videos["video_id"])]

    # narrated / silent
    kinds = videos.set_index("video_id")["kind"]
    truth = meta.set_index("video_id")["kind"]
    common = [v for v in truth.index if v in kinds.index and kinds[v]]
    accuracy = float(np.mean([kinds[v] == truth[v] for v in common])) if common else float("nan")
    wrong = [v for v in common if kinds[v] != truth[v]]

    # WER per narrated video (concatenated text), before/after correction
    refs_kept, hyp_kept_before, hyp_kept_after = [], [], []
    refs_all, hyp_all_before, hyp_all_after = [], [], []
    start_errors, labels, dropped = [], [], []
    for vid, vs in script.groupby("video_id"):
        ps = sents[sents["video_id"] == vid].sort_values("start")
        vs = vs.sort_values("start")
        refs_all.append(" ".join(vs["text"]))
        hyp_all_before.append(" ".join(ps["raw_text"]))
        hyp_all_after.append(" ".join(ps["text"]))
        kept = ps[ps["status"] == "kept"]
        refs_kept.append(" ".join(vs.loc[~vs["is_chatter"], "text"]))
        hyp_kept_before.append(" ".join(kept["raw_text"]))
        hyp_kept_after.append(" ".join(kept["text"]))
        for _, row in vs.iterrows():
            k = _best_match(row["start"], row["end"], ps)
            if k is not None:
                start_errors.append(abs(float(ps.loc[k, "start"]) - float(row["start"])))
        for _, p in ps.iterrows():
            k = _best_match(p["start"], p["end"], vs)
            if k is not None:
                labels.append(bool(vs.loc[k, "is_chatter"]))
                dropped.append(p["status"] != "kept")
    labels_a, dropped_a = np.array(labels, bool), np.array(dropped, bool)
    tp = int((labels_a & dropped_a).sum())
    precision = tp / dropped_a.sum() if dropped_a.sum() else float("nan")
    recall = tp / labels_a.sum() if labels_a.sum() else float("nan")

    run = json.loads((root / "run.json").read_text("utf-8")) if (root / "run.json").is_file() else {}
    audio, wall = run.get("asr_audio_s_total", 0.0), run.get("asr_wall_s_total", 0.0)
    return {
        "videos": int(len(common)),
        "narrated_silent_accuracy": accuracy,
        "misclassified": wrong,
        "wer_before": _wer(refs_kept, hyp_kept_before),
        "wer_after": _wer(refs_kept, hyp_kept_after),
        "wer_all_before": _wer(refs_all, hyp_all_before),
        "wer_all_after": _wer(refs_all, hyp_all_after),
        "script_sentences": int(len(script)),
        "matched_sentences": len(start_errors),
        "start_mae_median_s": float(np.median(start_errors)) if start_errors else float("nan"),
        "start_mae_mean_s": float(np.mean(start_errors)) if start_errors else float("nan"),
        "chatter_sentences": int(labels_a.sum()),
        "chatter_precision": float(precision),
        "chatter_recall": float(recall),
        "asr_audio_s": audio,
        "asr_wall_s": wall,
        "asr_audio_s_per_wall_s": audio / wall if wall else float("nan"),
    }


def measure_rewrite(root: str | Path, cfg: PipelineConfig, n_clips: int) -> dict:
    """Time the configured LLM rewriting ``n_clips`` clips of ``root`` into a fresh cache."""
    clips = read_manifest(root, "clips")
    narrations = list(dict.fromkeys(clips["narration"]))[:n_clips]
    if not narrations:
        return {"rewrite_clips": 0}
    lexicon = Lexicon.from_file(cfg.denoise.lexicon_file or None, threshold=cfg.denoise.fuzzy_threshold)
    t0 = time.perf_counter()
    llm = load_llm(cfg.llm)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        rw = Rewriter(cfg.rewrite, llm, lexicon, JsonCache(tmp), llm.model_id)
        t0 = time.perf_counter()
        rw.generate_pending(narrations)
        gen_s = time.perf_counter() - t0
        results = [rw.result(n) for n in narrations]
    statuses = pd.Series([r.status for r in results]).value_counts().to_dict()
    return {
        "rewrite_model": llm.model_id,
        "rewrite_clips": len(narrations),
        "rewrite_load_s": round(load_s, 2),
        "rewrite_clips_per_s": len(narrations) / gen_s if gen_s else float("nan"),
        "rewrite_fallback_rate": float(np.mean([r.status != "ok" for r in results])),
        "rewrite_status": {str(k): int(v) for k, v in statuses.items()},
        "rewrite_examples": [{"narration": n, "output": r.text, "status": r.status} for n, r in zip(narrations, results, strict=True)][:3],
    }


def format_table(metrics: dict) -> str:
    rows = [(k, f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in metrics.items() if k != "rewrite_examples"]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", required=True, help="synthetic dataset folder (metadata.csv, script.parquet)")
    ap.add_argument("--root", required=True, help="dataset root written by the pipeline")
    ap.add_argument("--rewrite-clips", type=int, default=0, help="also time the LLM rewriting this many clips")
    ap.add_argument("--llm-backend", default="transformers", choices=["transformers", "openai", "none"])
    ap.add_argument("--json", default="", help="where to write the metrics (default <root>/pipeline_eval.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = PipelineConfig(output=args.root)
    cfg.input.videos = str(Path(args.synth) / "metadata.csv")
    metrics = evaluate(args.synth, args.root)
    if args.rewrite_clips:
        cfg.llm.backend = args.llm_backend
        metrics.update(measure_rewrite(args.root, cfg, args.rewrite_clips))
    out = Path(args.json) if args.json else Path(args.root) / "pipeline_eval.json"
    atomic_write_json(out, metrics)
    sys.stdout.write(format_table(metrics) + "\n")
    return metrics


if __name__ == "__main__":
    main()
