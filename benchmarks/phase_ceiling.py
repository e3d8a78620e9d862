"""Supervised ceiling: what the vision tower reaches on phases when it is *given* the labels.

    python -m benchmarks.phase_ceiling --synth DIR --root DIR --models OphCLIP-tiny-MiniLM \\
        --steps 150 --train-split narrated_pretrain --seeds 0 1

Zero-shot accuracy is bounded by what the vision tower can learn from the same frames in
the same number of steps. This script trains each registry model's vision tower plus a
linear layer with cross-entropy on the ground-truth phase of every cached frame of the
pretraining videos (the dataset root's frame cache, the model's own training
augmentation), then tests on the held-out videos at 1 fps through the evaluation
transform. If the supervised tower stays far below the zero-shot goal at the demo's
budget, no loss or prompt change can reach it there: the budget or the data must grow.

One step sees ``--batch`` frames (default 128 = the demo's 32 clips x 4 frames).
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ophclip
from data_pipeline.frame_cache import FrameCache
from ophclip.datasets.synthetic import load_synthetic, read_metadata

from ._machine import finish_machine_facts, machine_facts, write_results

TRAIN_SPLITS = {"narrated_pretrain": ("narrated_pretrain",), "pretrain": ("narrated_pretrain", "silent_pretrain")}


def labelled_cache_frames(root: Path, phases, video_ids) -> tuple[list[tuple[str, int]], np.ndarray]:
    """(video_id, cache index) of every cached frame of ``video_ids`` and its phase (class index)."""
    cache = FrameCache(root / "frames")
    keys, labels = [], []
    for vid in video_ids:
        fps_cache, native = cache.fps(vid), float(phases.video(vid)["fps"])
        n_labels = len(phases.labels[vid])
        for i in range(cache.n_frames(vid)):
            # Cache frame i shows time i / fps_cache; its label is the native frame on screen then.
            keys.append((vid, i))
            labels.append(phases.labels[vid][min(int(np.floor(i / fps_cache * native + 1e-6)), n_labels - 1)])
    return keys, np.asarray(labels, np.int64)


def train_and_test(model_name: str, synth: Path, root: Path, steps: int, batch: int, train_split: str,
                   seed: int, lr: float) -> dict:
    bench_all = load_synthetic(synth, split=None, with_tools=False)
    phases = bench_all.phases
    meta = phases.videos.set_index("video_id")
    metadata = read_metadata(synth)
    split_of = dict(zip(metadata["video_id"], metadata["split"], strict=True))
    cache = FrameCache(root / "frames")
    train_ids = [v for v in phases.video_ids if split_of[v] in TRAIN_SPLITS[train_split] and v in cache]
    test_ids = [v for v in phases.video_ids if split_of[v] == "eval"]
    keys, labels = labelled_cache_frames(root, phases, train_ids)

    torch.manual_seed(seed)
    model, pre_train, pre_eval = ophclip.create_model_and_transforms(model_name)
    tower = model.visual
    head = torch.nn.Linear(model.config.embed_dim, len(phases.class_names))
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    tower.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        pick = rng.integers(0, len(keys), batch)
        x = torch.cat([pre_train(cache.get(keys[j][0], [keys[j][1]])) for j in pick])
        loss = F.cross_entropy(head(tower(x)), torch.from_numpy(labels[pick]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0

    tower.eval()
    per_video, per_video_grouped = [], []
    with torch.no_grad():
        for vid in test_ids:
            idx = phases.sample_indices(vid, 1.0)
            logits = torch.zeros(len(idx), len(phases.class_names))
            for pos, frames in bench_all.source.iter_frames(vid, idx, float(meta.loc[vid, "fps"]), 64):
                logits[torch.from_numpy(pos)] = head(tower(pre_eval(frames)))
            truth = phases.labels[vid][idx]
            per_video.append(float((logits.argmax(1).numpy() == truth).mean()))
            allowed = torch.tensor([c in set(phases.group_classes[phases.video(vid)["group"]])
                                    for c in phases.class_names])
            grouped = logits.masked_fill(~allowed, float("-inf"))
            per_video_grouped.append(float((grouped.argmax(1).numpy() == truth).mean()))
    return {"model": model_name, "seed": seed, "steps": steps, "batch": batch, "train_split": train_split,
            "train_videos": len(train_ids), "train_frames": len(keys), "test_videos": len(test_ids),
            "phase_accuracy": float(np.mean(per_video)), "phase_accuracy_surgery_known": float(np.mean(per_video_grouped)),
            "final_loss": float(loss.detach()), "train_s": train_s}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", type=Path, required=True, help="the `ophclip synth` folder (labels, held-out videos)")
    p.add_argument("--root", type=Path, required=True, help="the dataset root built from it (frame cache)")
    p.add_argument("--models", nargs="+", default=["OphCLIP-tiny-MiniLM"])
    p.add_argument("--steps", type=int, nargs="+", default=[150])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-split", choices=sorted(TRAIN_SPLITS), default="narrated_pretrain")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/phase_ceiling"))
    args = p.parse_args(argv)

    facts = machine_facts()
    runs = []
    for model_name in args.models:
        for steps in args.steps:
            for seed in args.seeds:
                r = train_and_test(model_name, args.synth, args.root, steps, args.batch, args.train_split, seed, args.lr)
                print(f"{model_name} steps={steps} seed={seed}: acc {r['phase_accuracy']:.3f} "
                      f"(surgery known {r['phase_accuracy_surgery_known']:.3f}) in {r['train_s']:.0f} s", flush=True)
                runs.append(r)
    lines = ["| vision tower of | steps | seeds | phase acc. (27 classes) | phase acc., surgery type known | train s |",
             "|---|---|---|---|---|---|"]
    for model_name in args.models:
        for steps in args.steps:
            rs = [r for r in runs if r["model"] == model_name and r["steps"] == steps]
            a = np.array([r["phase_accuracy"] for r in rs])
            g = np.array([r["phase_accuracy_surgery_known"] for r in rs])
            lines.append(f"| {model_name} | {steps} | {len(rs)} | {a.mean():.3f} ± {a.std():.3f} | "
                         f"{g.mean():.3f} ± {g.std():.3f} | {np.mean([r['train_s'] for r in rs]):.0f} |")
    md = "\n".join(lines) + "\n"
    result = {"runs": runs, "protocol": f"supervised cross-entropy on the cached frames of {args.train_split}, "
              f"batch {args.batch} frames, AdamW one-cycle lr {args.lr}; test: eval videos at 1 fps",
              "machine": finish_machine_facts(facts)}
    return write_results(args.out, "phase_ceiling", result, md)


if __name__ == "__main__":
    main()
