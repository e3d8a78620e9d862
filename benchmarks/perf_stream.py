"""Real-time streaming: student against teacher, side by side in one run.

    python -m benchmarks.perf_stream --synth out/synth --student runs/distill/student --teacher runs/pretrain/final
    python -m benchmarks.perf_stream --synth out/synth --student S --teacher T --speed-pairs OphCLIP-ViT-B-16:OphCLIP-student-ViT-Tiny

For the (teacher, student) pair, on the synthetic held-out (eval) videos:

* **speed**: both models stream the *same* frames, interleaved frame by frame (teacher, then
  student), so load from other processes on the machine falls on both alike; per-frame latency
  p50/p99 and frames/s of each, and their ratio. Latency is preprocessing + vision tower +
  pooling + classification + smoothing of one frame (``PhaseStreamer.push``);
* **accuracy**: zero-shot phase accuracy and macro-F1 (per video, then averaged:
  :func:`ophclip.metrics.phase_metrics`) of causal streaming (ring buffer + EMA + hysteresis)
  and of offline, non-causal evaluation of the same frames (a window centred on each frame,
  no smoothing), against the generator's ground truth;
* **size**: vision and total parameters and the size on disk of each saved folder.

``--speed-pairs A:B`` adds speed-only comparisons of registered architectures at their own
input size, with random weights (speed does not depend on the weights): e.g. the ViT-B-16
teacher against the ViT-Tiny student. Prints tables and writes all numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from benchmarks._machine import write_json
from benchmarks.adapters.synthetic import load_synthetic
from ophclip.factory import create_model_and_transforms, get_tokenizer
from ophclip.metrics import phase_metrics
from ophclip.prompts import resolve_prompt_file
from ophclip.stream import (
    PhaseClassifier,
    PhaseStreamer,
    StreamConfig,
    export_vision_onnx,
    iter_video_file,
)

logger = logging.getLogger(__name__)


def folder_bytes(path: str | Path) -> int | None:
    path = Path(path)
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_size(model, folder: str | Path | None) -> dict:
    counts = model.num_parameters()
    return {"vision_params": counts["vision"], "total_params": counts["total"],
            "vision_mb_fp32": counts["vision"] * 4 / 2**20,
            "disk_mb": (folder_bytes(folder) or 0) / 2**20 if folder else None}


def load_pair(teacher: str, student: str, prompts: str, class_names: list[str]):
    """Both models with their eval transforms, and the phase classifier (classes in the benchmark's order)
    built once from the *teacher's* text tower: the student uses it unchanged."""
    t_model, _, t_pre = create_model_and_transforms(teacher)
    s_model, _, s_pre = create_model_and_transforms(student)
    clf = PhaseClassifier.from_prompts(t_model, get_tokenizer(teacher), prompts, class_names=class_names)
    return (t_model.eval(), t_pre), (s_model.eval(), s_pre), clf


@torch.no_grad()
def offline_predictions(model, preprocess, frames: np.ndarray, classifier, window: int, batch: int = 64) -> np.ndarray:
    """Non-causal: per-frame embeddings of the whole video, mean over a window *centred* on each frame."""
    emb = torch.cat([model.encode_image(preprocess(frames[i : i + batch])) for i in range(0, len(frames), batch)])
    half = window // 2
    out = np.empty(len(frames), dtype=np.int64)
    for t in range(len(frames)):
        lo, hi = max(0, t - half), min(len(frames), t - half + window)
        clip = F.normalize(model.pool_frames(emb[lo:hi].unsqueeze(0)), dim=-1)[0]
        out[t] = int((clip @ F.normalize(classifier.weights.float(), dim=0)).argmax())
    return out


def decode(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    frames = []
    for i, frame in enumerate(iter_video_file(path)):
        if max_frames is not None and i >= max_frames:
            break
        frames.append(frame)
    return np.stack(frames)


def compare_pair(models: dict, classifier, videos: dict[str, Path], labels: dict[str, np.ndarray] | None,
                 stream_cfg, max_frames: int | None = None) -> dict:
    """Stream every video through each model (interleaved per frame) and score streaming and offline predictions."""
    streamers = {name: PhaseStreamer(m, pre, classifier, stream_cfg) for name, (m, pre) in models.items()}
    latencies: dict[str, list[float]] = {name: [] for name in models}
    preds: dict[str, dict[str, dict[str, np.ndarray]]] = {name: {"streaming": {}, "offline": {}} for name in models}
    for vid, path in videos.items():
        frames = decode(path, max_frames)
        for s in streamers.values():
            s.reset()
        phases: dict[str, list[int]] = {name: [] for name in models}
        for frame in frames:
            for name, s in streamers.items():  # interleaved: both models see the same load
                step = s.push(frame)
                phases[name].append(step.phase)
                latencies[name].append(step.latency_ms)
        for name, (m, pre) in models.items():
            preds[name]["streaming"][vid] = np.array(phases[name])
            preds[name]["offline"][vid] = offline_predictions(m, pre, frames, classifier, stream_cfg.window)
    out: dict = {}
    for name in models:
        lat = np.array(latencies[name])
        out[name] = {"frames": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
                     "p99_ms": float(np.percentile(lat, 99)), "fps": float(1000.0 / lat.mean())}
        if labels is not None:
            for mode in ("streaming", "offline"):
                truth, pred, ids = [], [], []
                for vid, p in preds[name][mode].items():
                    y = labels[vid][: len(p)]
                    truth.append(y)
                    pred.append(p[: len(y)])
                    ids.append(np.full(len(y), vid, dtype=object))
                m = phase_metrics(np.concatenate(truth), np.concatenate(pred), np.concatenate(ids))
                out[name][f"{mode}_accuracy"] = m["video_accuracy"]
                out[name][f"{mode}_f1"] = m["video_f1"]
        out[name]["predictions"] = {mode: {v: p.tolist() for v, p in d.items()} for mode, d in preds[name].items()}
    return out


def speed_pair(teacher_name: str, student_name: str, n_frames: int, stream_cfg, seed: int = 0,
               onnx_dir: Path | None = None) -> dict:
    """Random-weight architectures at their own input size on random 256x320 frames, interleaved.

    With ``onnx_dir``, the student's vision tower is also exported there and streamed with onnxruntime.
    """
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, 256, 320, 3), dtype=np.uint8)
    out = {}
    streamers = {}
    for role, name in (("teacher", teacher_name), ("student", student_name)):
        model, _, pre = create_model_and_transforms(name)
        clf = PhaseClassifier([f"p{k}" for k in range(10)], F.normalize(torch.randn(model.embed_dim, 10), dim=0), 10.0)
        streamers[role] = PhaseStreamer(model.eval(), pre, clf, stream_cfg)
        out[role] = {"model": name, **model_size(model, None)}
        if role == "student" and onnx_dir is not None:
            path = export_vision_onnx(model, Path(onnx_dir) / f"{name}.onnx")
            onnx_cfg = dataclasses.replace(stream_cfg, onnx=str(path), onnx_threads=torch.get_num_threads())
            streamers["student_onnx"] = PhaseStreamer(model, pre, clf, onnx_cfg)
            out["student_onnx"] = {"model": f"{name} (onnxruntime)", **model_size(model, None)}
    lat: dict[str, list[float]] = {r: [] for r in streamers}
    for frame in frames:
        for role, s in streamers.items():
            lat[role].append(s.push(frame).latency_ms)
    for role in streamers:
        arr = np.array(lat[role][2:])  # the first frames pay one-off allocation costs
        out[role].update({"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
                          "fps": float(1000.0 / arr.mean()), "frames": int(arr.size)})
    out["speedup"] = out["student"]["fps"] / out["teacher"]["fps"]
    if "student_onnx" in out:
        out["onnx_speedup"] = out["student_onnx"]["fps"] / out["teacher"]["fps"]
    return out


def print_tables(result: dict) -> None:
    console = Console()
    pair = result.get("pair")
    if pair:
        t = Table(title=f"streaming speed on {result['machine']['cpus']} CPUs (same frames, interleaved)")
        for col in ("model", "vision params", "disk MB", "frames/s", "p50 ms", "p99 ms"):
            t.add_column(col, justify="right")
        for role in ("teacher", "student"):
            r = pair[role]
            t.add_row(role, f"{r['vision_params']:,}", f"{r['disk_mb']:.1f}" if r["disk_mb"] else "-",
                      f"{r['fps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}")
        console.print(t)
        t = Table(title=f"zero-shot phase recognition, {len(pair['videos'])} held-out videos (per-video mean)")
        for col in ("model", "streaming acc", "streaming F1", "offline acc", "offline F1"):
            t.add_column(col, justify="right")
        for role in ("teacher", "student"):
            r = pair[role]
            t.add_row(role, *(f"{r.get(k, float('nan')):.3f}" for k in
                              ("streaming_accuracy", "streaming_f1", "offline_accuracy", "offline_f1")))
        console.print(t)
        console.print(f"teacher: {pair['teacher']['model']}\nstudent: {pair['student']['model']}\n"
                      f"student/teacher: {pair['speedup']:.2f}x frames/s, {pair['compression']:.1f}x fewer vision "
                      f"parameters, {pair.get('accuracy_retained', float('nan')):.2f} of the teacher's streaming accuracy")
    for sp in result.get("speed_pairs", []):
        t = Table(title=f"speed only (random weights): {sp['teacher']['model']} vs {sp['student']['model']}")
        for col in ("model", "vision params", "frames/s", "p50 ms", "p99 ms"):
            t.add_column(col, justify="right")
        for role in ("teacher", "student", "student_onnx"):
            if role not in sp:
                continue
            r = sp[role]
            t.add_row(r["model"], f"{r['vision_params']:,}", f"{r['fps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}")
        console.print(t)
        console.print(f"student/teacher: {sp['speedup']:.2f}x frames/s")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", help="synthetic dataset folder (ophclip synth); its eval videos are streamed")
    p.add_argument("--teacher", default="OphCLIP-tiny-MiniLM", help="teacher: saved folder or registered name")
    p.add_argument("--student", help="student: saved folder (ophclip distill)")
    p.add_argument("--prompts", default="synthetic", help="prompt YAML (or a shipped name in ophclip/prompts/)")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--ema", type=float, default=0.5)
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--hold", type=int, default=1)
    p.add_argument("--max-videos", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None, help="frames streamed per video")
    p.add_argument("--speed-pairs", nargs="*", default=[], help="TEACHER:STUDENT registered names, speed only")
    p.add_argument("--speed-frames", type=int, default=40)
    p.add_argument("--onnx", action="store_true", help="speed pairs: also stream the student through onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default="runs/perf_stream.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = StreamConfig(window=args.window, ema_alpha=args.ema, hysteresis_margin=args.margin,
                       hysteresis_frames=args.hold)
    result: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "load_avg_1min": os.getloadavg()[0], "platform": platform.platform()},
                    "stream_config": vars(args), "speed_pairs": []}
    if args.student:
        if not args.synth:
            p.error("--student needs --synth (the held-out videos to stream)")
        bench = load_synthetic(args.synth, split="eval", with_tools=False)
        ids = bench.phases.video_ids[: args.max_videos] if args.max_videos else bench.phases.video_ids
        videos = {v: bench.source.paths[v] for v in ids}
        prompts = resolve_prompt_file(args.prompts)
        (tm, tp), (sm, sp), clf = load_pair(args.teacher, args.student, str(prompts), bench.phases.class_names)
        t0 = time.perf_counter()
        scored = compare_pair({"teacher": (tm, tp), "student": (sm, sp)}, clf, videos, bench.phases.labels, cfg,
                              args.max_frames)
        pair = {"teacher": {"model": args.teacher, **model_size(tm, args.teacher), **scored["teacher"]},
                "student": {"model": args.student, **model_size(sm, args.student), **scored["student"]},
                "videos": ids, "seconds": time.perf_counter() - t0}
        pair["speedup"] = pair["student"]["fps"] / pair["teacher"]["fps"]
        pair["compression"] = pair["teacher"]["vision_params"] / pair["student"]["vision_params"]
        t_acc = pair["teacher"]["streaming_accuracy"]
        pair["accuracy_retained"] = pair["student"]["streaming_accuracy"] / t_acc if t_acc > 0 else float("nan")
        result["pair"] = pair
    for spec in args.speed_pairs:
        teacher, _, student = spec.partition(":")
        if not student:
            p.error(f"--speed-pairs {spec!r}: expected TEACHER:STUDENT")
        onnx_dir = Path(args.out).parent / "onnx" if args.onnx else None
        result["speed_pairs"].append(speed_pair(teacher, student, args.speed_frames, cfg, onnx_dir=onnx_dir))
    print_tables(result)
    out = write_json(result, args.out)
    logging.getLogger(__name__).info("wrote %s", out)
    return result


if __name__ == "__main__":
    main()
