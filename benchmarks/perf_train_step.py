"""Training-step cost: the OphCLIP trainer's step against a plain open_clip ClipLoss step, side by side.

    python -m benchmarks.perf_train_step                               # tiny-MiniLM + ViT-B-16 (about 8 min)
    python -m benchmarks.perf_train_step --models OphCLIP-tiny-MiniLM --reps 15 --threads 2
    python -m benchmarks.perf_train_step --root out/root --profile "OphCLIP-tiny-MiniLM/ophclip clip"

For each model, on the same dataset root (a small synthetic set generated once into ``--data``
the way ``ophclip demo`` does it, or ``--root``), in ONE run with the variants interleaved rep by
rep so load from other processes falls on all of them alike (median of ``--reps``):

* **ophclip clip**: ``Trainer.train_step()`` at the clip level (clip <-> narration, demo config:
  ``repeated_text: ignore``, grad clipping at 1.0; a frozen text tower's embeddings come from the
  trainer's cache);
* **ophclip video (retrieval off) / +feature_aug / +soft_positive**: ``Trainer.train_step()`` at the
  video level (video <-> title summary, video <-> mean narration) without and with the silent-pool
  memory bank that the trainer builds itself (``retrieval.*`` from the flags).
  The bank is built (a full refresh) before timing; its cost is reported, amortised over
  ``memory.refresh_every`` steps;
* **plain clip / plain video**: open_clip's recipe on the SAME batch with the same towers (a copy of
  the model): ``model(video, tokens)`` (the text tower runs every step, as open_clip does with a
  locked text tower) + ``open_clip.loss.ClipLoss`` + AdamW + logit-scale clamp;
* **plain clip (cached text)**: the same with the trainer's cached text embeddings, which separates
  the trainer's own overhead from the text-cache saving (frozen text towers only).

``step_ms`` is compute only (forward, loss, backward, optimizer) on a batch already loaded;
``train_step_ms`` is the whole ``train_step()`` including its DataLoader fetch (``data_ms``).
The ratio ophclip/plain is taken on ``step_ms`` (goal <= 1.10 at the clip level). The retrieval
share of a video step is the hook's own time (``stats`` search and encode, plus the soft_positive
neighbours' re-encoding forward), and ``retrieval_overhead_pct`` the step time over the
retrieval-off step. FLOPs of one whole step (forward + backward) are counted with
``torch.utils.flop_counter.FlopCounterMode`` in an untimed first rep; GFLOP/s = FLOPs / step time,
MFU = GFLOP/s / the fp32 matmul peak measured interleaved with the reps at the same thread count.
The slowest variant (or ``--profile``) is then profiled with ``torch.profiler`` (top ops by self
CPU time) and ``cProfile`` (ophclip / data_pipeline / retrieval functions by cumulative time).
Prints Markdown tables and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import logging
import math
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter as fc

from benchmarks._machine import finish_machine_facts, machine_facts, markdown_table, write_json
from benchmarks.ablation import RANDOM_INIT_MODEL
from data_pipeline.synth import SynthConfig, build_root_from_ground_truth, generate_dataset
from data_pipeline.synth.config import DEMO
from ophclip.config import apply_overrides, from_dict, load_config
from ophclip.train import PretrainConfig, Trainer

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path(tempfile.gettempdir()) / "ophclip_bench"
# The demo preset reduced to a few videos: enough for a clip batch of 32, a video batch of 8
# and a silent pool for the memory bank; generated once (about 30 s on 2 cores) and reused.
SYNTH_CHANGES = {"n_narrated": 10, "n_silent": 6, "n_eval": 2, "duration_s": [30.0, 60.0]}

# Per-model sizes: the demo batch for the tiny model; ViT-B-16 at 224 px is ~100x the FLOPs per frame.
MODEL_SIZES = {
    "OphCLIP-tiny-MiniLM": {"clip_batch": 32, "clip_frames": 4, "video_batch": 8, "video_frames": 16,
                            "reps": 9, "modes": ["off", "feature_aug", "soft_positive"]},
    "OphCLIP-ViT-B-16": {"clip_batch": 4, "clip_frames": 2, "video_batch": 4, "video_frames": 2,
                         "reps": 2, "modes": ["feature_aug"]},
}
FALLBACK_SIZES = {"clip_batch": 8, "clip_frames": 2, "video_batch": 4, "video_frames": 4, "reps": 3,
                  "modes": ["off", "feature_aug"]}


def video_variant(mode: str) -> str:
    return "ophclip video (retrieval off)" if mode == "off" else f"ophclip video +{mode}"


# ----------------------------------------------------------------------------------------- data
def ensure_dataset(data_dir: str | Path, changes: dict[str, Any] | None = None, workers: int = 2) -> tuple[Path, Path]:
    """A synthetic dataset (the demo preset with ``changes``) and its ground-truth root, made once.

    Returns ``(synth_dir, root)`` under ``data_dir/<key>/``, where the key names the changes,
    so a different size never reuses a stale set. The same steps as ``ophclip demo``'s synth
    and ground_truth_root stages (frame cache at 4 fps, short side 64 px).
    """
    changes = dict(SYNTH_CHANGES if changes is None else changes)
    key = "_".join(f"{k}-{'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(changes.items()))
    base = Path(data_dir) / key
    synth, root = base / "synth", base / "root"
    if (synth / "synth.json").is_file() and (root / "run.json").is_file() and (root / "frames" / "index.parquet").is_file():
        return synth, root
    overrides = [f"{k}={json.dumps(v)}" for k, v in changes.items()] + [f"workers={workers}"]
    cfg = from_dict(SynthConfig, apply_overrides(dict(DEMO), overrides), source="<benchmark preset>")
    logger.info("generating the benchmark's synthetic dataset into %s (once)", synth)
    generate_dataset(cfg, synth, progress=False)
    build_root_from_ground_truth(synth, root, fps=4.0, short_side=64, workers=workers, progress=False)
    return synth, root


# ----------------------------------------------------------------------------------------- timing
class MatmulPeak:
    """GFLOP/s of an fp32 (n x n) @ (n x n) matmul at torch's current thread count.

    ``measure(reps)`` times ``reps`` matmuls; calling the object times one more and keeps it, so
    the benchmark can interleave peak samples with the steps (they then see the same load).
    """

    def __init__(self, n: int = 2048):
        self.n = n
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(self.a, self.b)  # warm-up (allocation, kernel choice)
        self.samples: list[float] = []

    def __call__(self) -> float:
        t0 = time.perf_counter()
        torch.mm(self.a, self.b)
        seconds = time.perf_counter() - t0
        self.samples.append(seconds)
        return seconds

    def measure(self, reps: int = 5) -> dict[str, float]:
        times = [self() for _ in range(reps)]
        return self.summary(times)

    def summary(self, times: list[float] | None = None) -> dict[str, float]:
        times = self.samples if times is None else times
        med = float(np.median(times))
        flop = 2 * self.n**3
        return {"n": self.n, "reps": len(times), "median_s": med, "gflops": flop / med / 1e9,
                "best_gflops": flop / min(times) / 1e9}


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> dict[str, float]:
    """Median GFLOP/s of an fp32 (n x n) @ (n x n) matmul at torch's current thread count."""
    return MatmulPeak(n).measure(reps)


def _register_cpu_attention_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU flash-attention ones that
    ``scaled_dot_product_attention`` runs here; count them with torch's own SDPA formulas."""
    aten = torch.ops.aten
    if aten._scaled_dot_product_flash_attention_for_cpu in fc.flop_registry:
        return

    @fc.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of everything ``fn`` runs (forward and backward), by torch's FlopCounterMode."""
    _register_cpu_attention_flops()
    with fc.FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _FixedLevel:
    """A stand-in for the trainer's LevelSchedule that always trains one level."""

    def __init__(self, level: str):
        self.level = level
        self.levels = (level,)

    def level_at(self, step: int) -> str:
        return self.level


class _BatchRecorder:
    """Wraps the objective's ``level_batch``: keeps the last batch (for the plain step) and times the fetch."""

    def __init__(self, trainer):
        self._next = trainer.objective.level_batch
        self.batch: dict[str, Any] | None = None
        self.seconds = 0.0

    def __call__(self, level: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.batch = self._next(level)
        self.seconds = time.perf_counter() - t0
        return self.batch


class _Timed:
    """Wraps a callable and sums its wall time (e.g. the soft_positive neighbour re-encode)."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t0


# ----------------------------------------------------------------------------------------- the steps
def make_trainer(model: str, root: Path, out_dir: Path, sizes: dict, mode: str, args: argparse.Namespace,
                 extra: list[str] = ()):
    """The real ``ophclip.train.Trainer`` on ``root``: demo config, this model and sizes, retrieval ``mode``
    (``extra``: more dotted overrides)."""
    overrides = [
        f"data.root={root}", f"model.name={model}", *RANDOM_INIT_MODEL, f"train.output_dir={out_dir}",
        f"train.clip_batch_size={sizes['clip_batch']}", f"data.clip_frames={sizes['clip_frames']}",
        f"train.video_batch_size={sizes['video_batch']}", f"data.video_frames={sizes['video_frames']}",
        "train.steps=1000000", "train.save_every=1000000", "train.device=cpu", "train.precision=fp32",
        f"data.num_workers={args.num_workers}", "log.tensorboard=false", "log.jsonl=false",
        f"retrieval.mode='{mode}'",  # quoted: YAML reads a bare off as false
        f"retrieval.k={args.k}", f"retrieval.refresh={args.refresh}", f"retrieval.refresh_every={args.refresh_every}",
        f"retrieval.index={args.index}", "retrieval.warmup_steps=0", *extra,
    ]
    cfg = load_config(PretrainConfig, Path(__file__).resolve().parents[1] / "configs" / "pretrain_demo.yaml", overrides)
    return Trainer(cfg)


class PlainStep:
    """open_clip's training step (open_clip_train.train_one_epoch without accumulation) on given batches.

    ``model(video=..., text=tokens)`` -> ``open_clip.loss.ClipLoss`` -> backward -> AdamW (open_clip's
    no-decay rule for gains, biases and the logit scale) -> clamp the logit scale to [0, ln 100].
    ``text_cache``: look the text embeddings up instead of running the (frozen) text tower.
    """

    def __init__(self, model, tokenizer, lr: float, weight_decay: float, text_cache=None):
        self.model, self.tokenizer, self.text_cache = model, tokenizer, text_cache
        self.loss = ClipLoss()
        exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
             {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay}],
            # The same (fused) AdamW kernel as the trainer, so the ratio measures OphCLIP's own overhead.
            lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True,
        )

    def forward_backward(self, batch: dict[str, Any]) -> float:
        self.model.train()
        if self.text_cache is None:
            out = self.model(video=batch["frames"], text=self.tokenizer(list(batch["text"])))
            text = out["text_features"]
        else:
            out = self.model(video=batch["frames"])
            text = F.normalize(self.text_cache.lookup(list(batch["text"])), dim=-1)
        loss = self.loss(out["video_features"], text, out["logit_scale"])
        loss.backward()
        return float(loss.detach())

    def step(self, batch: dict[str, Any]) -> float:
        loss = self.forward_backward(batch)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        return loss


# ----------------------------------------------------------------------------------------- one model
def bench_model(model_name: str, root: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes = {**MODEL_SIZES.get(model_name, FALLBACK_SIZES)}
    for key in ("clip_batch", "clip_frames", "video_batch", "video_frames", "reps"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    modes = args.retrieval_modes or sizes["modes"]
    reps = sizes["reps"]
    logger.info("%s: sizes %s, retrieval modes %s", model_name, sizes, modes)

    trainers = {}
    for mode in modes:
        trainers[mode] = make_trainer(model_name, root, work / f"{model_name}_{mode}", sizes, mode, args)
    first = trainers[modes[0]]
    recorders = {mode: _BatchRecorder(t) for mode, t in trainers.items()}
    for mode, t in trainers.items():
        t.objective.level_batch = recorders[mode]
    neighbour_timers = {}
    for mode, t in trainers.items():
        if hasattr(t.retrieval, "neighbour_embeddings_with_grad"):
            neighbour_timers[mode] = _Timed(t.retrieval.neighbour_embeddings_with_grad)
            t.retrieval.neighbour_embeddings_with_grad = neighbour_timers[mode]

    tcfg = first.cfg.train
    plain_model = copy.deepcopy(first.model)
    plain = PlainStep(plain_model, first.components.tokenizer, tcfg.lr, tcfg.weight_decay)
    plain_cached = (PlainStep(copy.deepcopy(first.model), first.components.tokenizer, tcfg.lr, tcfg.weight_decay,
                              text_cache=first.text_cache) if first.text_cache is not None else None)

    def ophclip_step(trainer, level: str) -> dict[str, float]:
        trainer.schedule = _FixedLevel(level)
        stats = getattr(trainer.retrieval, "stats", None)
        before = dict(stats) if stats else {}
        timer = neighbour_timers.get(next(m for m, t in trainers.items() if t is trainer))
        nb_before = timer.seconds if timer else 0.0
        metrics = trainer.train_step()
        data_s = trainer.objective.level_batch.seconds
        out = {"train_step_s": metrics["step_time_s"], "data_s": data_s, "step_s": metrics["step_time_s"] - data_s}
        if stats:
            out["search_s"] = stats["search_s"] - before.get("search_s", 0.0)
            out["encode_s"] = stats["encode_s"] - before.get("encode_s", 0.0)
        if timer:
            out["neighbour_encode_s"] = timer.seconds - nb_before
        return out

    def plain_step(stepper: PlainStep, batch) -> dict[str, float]:
        t0 = time.perf_counter()
        stepper.step(batch)
        return {"step_s": time.perf_counter() - t0}

    # Variants, in the interleaving order of each rep. A plain step reuses the batch the ophclip step
    # just drew (same frames, same augmentation, same texts).
    variants: list[tuple[str, str, Callable[[], dict[str, float]]]] = []
    variants.append(("ophclip clip", "clip", lambda: ophclip_step(first, "clip")))
    variants.append(("plain clip", "clip", lambda: plain_step(plain, recorders[modes[0]].batch)))
    if plain_cached is not None:
        variants.append(("plain clip (cached text)", "clip", lambda: plain_step(plain_cached, recorders[modes[0]].batch)))
    for mode in modes:
        variants.append((video_variant(mode), "video", lambda mode=mode: ophclip_step(trainers[mode], "video")))
    variants.append(("plain video", "video", lambda: plain_step(plain, recorders[modes[-1]].batch)))

    # The memory bank is built before any timing (a full refresh: encode the whole silent pool).
    refresh_s: dict[str, float] = {}
    for mode, t in trainers.items():
        stats = getattr(t.retrieval, "stats", None)
        if stats is not None:
            before = stats["encode_s"]
            t.retrieval.maybe_refresh(t.step, t.model)
            refresh_s[video_variant(mode)] = stats["encode_s"] - before
    # Rep 0, untimed: counts each variant's FLOPs (forward + backward of one whole step) and pays
    # the first-step allocations; then --warmup more untimed reps, then the timed ones.
    flops: dict[str, int] = {}
    for name, _level, fn in variants:
        flops[name] = count_flops(fn)
    for _ in range(args.warmup):
        for _name, _level, fn in variants:
            fn()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    peak_meter = MatmulPeak(args.peak_n)  # one peak sample per rep, interleaved with the steps
    for rep in range(reps):
        for name, _level, fn in variants:
            samples[name].append(fn())
        peak_meter()
        peak_meter()
        logger.info("%s: rep %d/%d done", model_name, rep + 1, reps)

    peak = peak_meter.summary()
    rows = []
    for name, level, _ in variants:
        s = samples[name]

        def med(key: str, s=s) -> float | None:
            return float(np.median([x[key] for x in s])) if key in s[0] else None

        step_s = med("step_s")
        batch = sizes["clip_batch"] if level == "clip" else sizes["video_batch"]
        frames = sizes["clip_frames"] if level == "clip" else sizes["video_frames"]
        gflops = flops[name] / 1e9
        row = {
            "model": model_name, "variant": name, "level": level, "batch": batch, "frames": frames,
            "step_ms": 1000 * step_s, "p_min_ms": 1000 * min(x["step_s"] for x in s),
            "p_max_ms": 1000 * max(x["step_s"] for x in s),
            "clips_per_s": batch / step_s, "frames_per_s": batch * frames / step_s,
            "gflop_per_step": gflops, "gflop_per_s": gflops / step_s,
            "mfu_pct": 100 * gflops / step_s / peak["gflops"],
        }
        if "train_step_s" in s[0]:
            row["train_step_ms"] = 1000 * med("train_step_s")
            row["data_ms"] = 1000 * med("data_s")
        if level == "video" and "search_s" in s[0]:
            retrieval = np.array([x["search_s"] + x["encode_s"] + x.get("neighbour_encode_s", 0.0) for x in s])
            steps = np.array([x["step_s"] for x in s])
            row["search_ms"] = 1000 * med("search_s")
            row["encode_ms"] = 1000 * med("encode_s")
            if "neighbour_encode_s" in s[0]:
                row["neighbour_encode_fwd_ms"] = 1000 * med("neighbour_encode_s")
            row["retrieval_share_pct"] = float(100 * np.median(retrieval / steps))
            row["bank_full_refresh_s"] = refresh_s.get(name)
            if refresh_s.get(name) is not None and args.refresh == "full":
                row["refresh_amortised_ms_per_step"] = 1000 * refresh_s[name] / args.refresh_every
        rows.append(row)
    by = {r["variant"]: r for r in rows}
    ratios = {
        "clip: ophclip / plain": by["ophclip clip"]["step_ms"] / by["plain clip"]["step_ms"],
    }
    if "plain clip (cached text)" in by:
        ratios["clip: ophclip / plain (cached text)"] = by["ophclip clip"]["step_ms"] / by["plain clip (cached text)"]["step_ms"]
    for mode in modes:
        ratios[f"video {'retrieval off' if mode == 'off' else '+' + mode}: ophclip / plain"] = (
            by[video_variant(mode)]["step_ms"] / by["plain video"]["step_ms"])
    if "off" in modes:
        off_ms = by[video_variant("off")]["step_ms"]
        for mode in modes:
            if mode != "off":
                row = by[video_variant(mode)]
                row["retrieval_overhead_pct"] = 100 * (row["step_ms"] - off_ms) / row["step_ms"]
    return {"model": model_name, "sizes": sizes, "retrieval_modes": modes, "rows": rows, "ratios": ratios,
            "matmul_peak_interleaved": peak,
            "samples": samples, "trainers": trainers, "plain": plain, "plain_cached": plain_cached,
            "first": first, "recorders": recorders}


# ----------------------------------------------------------------------------------------- profile
def profile_variant(res: dict[str, Any], variant: str, steps: int, top: int) -> dict[str, Any]:
    """torch.profiler (top ops by self CPU time) and cProfile (our Python code) of ``steps`` steps of ``variant``."""
    trainers, first = res["trainers"], res["first"]
    if variant.startswith("ophclip video"):
        t = next(t for mode, t in trainers.items() if video_variant(mode) == variant)

        def run():
            t.schedule = _FixedLevel("video")
            t.train_step()
    elif variant == "ophclip clip":
        def run():
            first.schedule = _FixedLevel("clip")
            first.train_step()
    else:
        stepper = res["plain_cached"] if "cached" in variant else res["plain"]
        level = "video" if "video" in variant else "clip"
        batch = first.next_batch(level)

        def run():
            stepper.step(batch)

    # The variant already ran (counting and timed reps): no extra warm-up. Both profilers in one pass:
    # cProfile's overhead lands on Python calls, the torch profiler times the aten ops themselves.
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pr.enable()
        for _ in range(steps):
            run()
        pr.disable()
    wall = time.perf_counter() - t0
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=top)
    total_self = sum(e.self_cpu_time_total for e in averages) or 1.0
    entries = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    torch_top = [{"name": e.key, "calls": int(e.count), "self_cpu_ms": e.self_cpu_time_total / 1000 / steps,
                  "cpu_total_ms": e.cpu_time_total / 1000 / steps,
                  "self_cpu_pct": 100 * e.self_cpu_time_total / total_self} for e in entries]
    stats = pstats.Stats(pr)
    ours = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(part in file for part in ("/ophclip/", "/data_pipeline/", "/retrieval/")):
            ours.append({"function": f"{Path(file).parent.name}/{Path(file).name}:{line}({func})", "calls": nc,
                         "self_ms": 1000 * tt / steps, "cum_ms": 1000 * ct / steps})
    by_self = sorted(ours, key=lambda r: r["self_ms"], reverse=True)[:top]
    ours.sort(key=lambda r: r["cum_ms"], reverse=True)
    return {"variant": variant, "model": res["model"], "steps": steps, "wall_s_per_step_profiled": wall / steps,
            "torch_top_self_cpu": torch_top, "torch_table": table, "python_top_cumulative": ours[:top],
            "python_top_self": by_self}


# ----------------------------------------------------------------------------------------- report
COLUMNS = ["model", "variant", "batch", "frames", "step_ms", "clips_per_s", "train_step_ms", "data_ms",
           "gflop_per_step", "gflop_per_s", "mfu_pct", "retrieval_share_pct"]


def print_report(report: dict[str, Any]) -> None:
    peak = report["matmul_peak"]
    print(f"\n## Training step cost ({report['machine']['cpu_model']}, {report['config']['threads']} torch thread(s))\n")
    print(markdown_table(report["rows"], COLUMNS))
    print("\n`step_ms`: forward + loss + backward + optimizer on a loaded batch (median); `train_step_ms`: the "
          "whole Trainer.train_step() including `data_ms` of DataLoader fetch.")
    inter = ", ".join(f"{m}: {p['gflops']:.1f}" for m, p in report["matmul_peak_interleaved"].items())
    print(f"MFU = gflop_per_s / the fp32 matmul peak ({peak['n']}x{peak['n']}) measured interleaved with that model's "
          f"reps (median GFLOP/s: {inter}); alone at start / end: {peak['gflops']:.1f} / "
          f"{report['matmul_peak_at_end']['gflops']:.1f}.\n")
    print(markdown_table([{"comparison": k, "ratio": v, "goal": "<= 1.10" if "clip: ophclip / plain" in k else ""}
                          for k, v in report["ratios"].items()]))
    retr = [r for r in report["rows"] if "search_ms" in r]
    if retr:
        print("\n### Retrieval inside the video step\n")
        print(markdown_table(retr, ["model", "variant", "step_ms", "search_ms", "encode_ms", "neighbour_encode_fwd_ms",
                                    "retrieval_share_pct", "retrieval_overhead_pct", "bank_full_refresh_s",
                                    "refresh_amortised_ms_per_step"]))
    prof = report.get("profile")
    if prof:
        print(f"\n### Profile of the slowest step: {prof['model']} / {prof['variant']} ({prof['steps']} steps, "
              f"per-step times)\n")
        print(markdown_table(prof["torch_top_self_cpu"], ["name", "calls", "self_cpu_ms", "cpu_total_ms", "self_cpu_pct"]))
        print("\nPython (ophclip / data_pipeline / retrieval), by cumulative time per step:\n")
        print(markdown_table(prof["python_top_cumulative"], ["function", "calls", "self_ms", "cum_ms"]))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="OphCLIP-tiny-MiniLM,OphCLIP-ViT-B-16", help="comma-separated model names")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cache folder of the generated synthetic dataset")
    p.add_argument("--root", type=Path, default=None, help="use this dataset root instead of generating one")
    p.add_argument("--synth", default=None, help=f"synth config changes as JSON (default: {json.dumps(SYNTH_CHANGES)})")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for the steps (default 1)")
    p.add_argument("--reps", type=int, default=None, help="timed reps per variant (default: per model, 9 / 2)")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed reps after the first (FLOP-counting, also untimed) one")
    p.add_argument("--clip-batch", dest="clip_batch", type=int, default=None)
    p.add_argument("--clip-frames", dest="clip_frames", type=int, default=None)
    p.add_argument("--video-batch", dest="video_batch", type=int, default=None)
    p.add_argument("--video-frames", dest="video_frames", type=int, default=None)
    p.add_argument("--retrieval-modes", default=None, help="feature_aug,soft_positive (default: per model)")
    p.add_argument("--k", type=int, default=4, help="retrieval.k")
    p.add_argument("--refresh", default="full", choices=["full", "incremental"], help="retrieval.refresh")
    p.add_argument("--refresh-every", type=int, default=100, help="retrieval.refresh_every")
    p.add_argument("--index", default="flat", help="retrieval.index")
    p.add_argument("--num-workers", type=int, default=0, help="data.num_workers of the trainer's loader")
    p.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak measurement")
    p.add_argument("--profile-steps", type=int, default=1, help="steps profiled (0: no profile)")
    p.add_argument("--profile", default="slowest", help="'slowest', or MODEL/VARIANT to profile that one")
    p.add_argument("--profile-top", type=int, default=12)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_train_step.json"))
    args = p.parse_args(argv)
    args.retrieval_modes = [m.strip() for m in args.retrieval_modes.split(",") if m.strip()] if args.retrieval_modes else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    torch.set_num_threads(args.threads)
    facts = machine_facts()
    if args.root is not None:
        root, synth = args.root, None
    else:
        synth, root = ensure_dataset(args.data, json.loads(args.synth) if args.synth else None)
    args.peak = matmul_peak_gflops(args.peak_n)
    logger.info("fp32 matmul peak: %.1f GFLOP/s", args.peak["gflops"])

    results = []
    with tempfile.TemporaryDirectory(prefix="perf_train_step_") as work:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            results.append(bench_model(name, Path(root), args, Path(work)))
        rows = [r for res in results for r in res["rows"]]
        if args.profile == "slowest":
            target = max(rows, key=lambda r: r["step_ms"])
            model_name, variant = target["model"], target["variant"]
        else:
            model_name, _, variant = args.profile.partition("/")
        profile = None
        if args.profile_steps > 0:
            res = next(x for x in results if x["model"] == model_name)
            profile = profile_variant(res, variant, args.profile_steps, args.profile_top)
        # The peak again at the end: how much did the machine's speed move during the run?
        peak_end = matmul_peak_gflops(args.peak_n)

    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "peak"},
        "dataset": {"root": str(root), "synth": str(synth) if synth else None},
        "machine": finish_machine_facts(facts),
        "matmul_peak": args.peak,
        "matmul_peak_at_end": peak_end,
        "matmul_peak_interleaved": {res["model"]: res["matmul_peak_interleaved"] for res in results},
        "rows": rows,
        "ratios": {f"{res['model']} {k}": v for res in results for k, v in res["ratios"].items()},
        "sizes": {res["model"]: res["sizes"] for res in results},
        "samples_ms": {res["model"]: {v: [1000 * x["step_s"] for x in s] for v, s in res["samples"].items()} for res in results},
        "profile": profile,
    }
    print_report(report)
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
