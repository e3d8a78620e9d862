"""The ablation: which part of OphCLIP's pretraining pulls its weight on the synthetic set?

    python -m benchmarks.ablation --data /tmp/ablation_data --out benchmarks/results/ablation

Every variant trains ``configs/pretrain_demo.yaml`` (the demo's budget of steps) with its own
overrides and each seed, then runs the demo's zero-shot evaluation on the held-out videos and
measures its video embeddings' retrieval of silent neighbours. Rows are mean ± std over seeds.
Runs are cached (``<out>/<variant>/seed<k>/row.json``), so an interrupted ablation resumes
where it stopped and ``--variants`` adds rows to an existing table.

``--data`` holds the synthetic dataset and its ground-truth root; they are generated (as
``ophclip demo --stages synth,ground_truth_root`` does) when missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._machine import command_line, write_results
from ophbase.io import atomic_write_json
from ophclip.allocator import keep_freed_memory
from ophclip.config import load_config

logger = logging.getLogger("benchmarks.ablation")

# Retrieval: the bank is rebuilt every 40 steps after a 40-step warm-up (about 10 video steps
# of the 150-step demo budget see neighbours). K = 4 of the 30 silent videos.
MEMORY = ["retrieval.k=4", "retrieval.warmup_steps=40", "retrieval.refresh_every=40", "retrieval.max_score=0.98"]
# Every variant starts from the demo config with retrieval and the auxiliary loss off, then
# turns on its own parts (the demo config itself may have them on).
OFF = ["retrieval.mode=off", "ssl_aux.weight=0.0"]
# The first rows use the first demo's tower (a 4-layer ViT) and uniformly shuffled clip batches.
# Scratch towers: random init, nothing locked, the first demo's learning rate (the demo config now
# holds the ImageNet recipe's).
# Undo the demo config's ImageNet tower settings.
RANDOM_INIT_MODEL = ["model.pretrained=null", "model.lock_image=false", "model.lock_image_unlocked_groups=0",
                     "model.freeze_bn_stats=false", "model.image_size=null"]
SCRATCH = [*RANDOM_INIT_MODEL, "train.lr=1e-3", *OFF]
BASE = ["model.name=OphCLIP-tiny-MiniLM", "data.clips_per_video=1", *SCRATCH]
CNN = ["model.name=OphCLIP-tiny-RN-MiniLM", "data.clips_per_video=1", *SCRATCH]
GROUPED = ["data.clips_per_video=8"]  # about one whole video per run of clips (242 clips / 30 videos)
FIRST_DEMO = [*CNN, *GROUPED, "retrieval.mode=soft_positive", *MEMORY]  # the first wave's demo (scratch CNN)
# The ImageNet EfficientNet-Lite0, its first 14 of 17 layer groups locked with frozen BatchNorm statistics.
IMAGENET = ["model.name=OphCLIP-EffNetLite0-MiniLM", "model.pretrained=imagenet", "model.lock_image=true",
            "model.lock_image_unlocked_groups=3", "model.freeze_bn_stats=true", "model.image_size=160",
            "train.lr=5e-4", *OFF, *GROUPED]
DEMO = [*IMAGENET, "retrieval.mode=soft_positive", *MEMORY]  # configs/pretrain_demo.yaml, spelled out
VARIANTS: dict[str, list[str]] = {
    "clip only (CLIP-style)": [*BASE, "train.video_every=0"],
    "clip + video (hierarchical)": [*BASE],
    "hierarchical + retrieval soft_positive": [*BASE, "retrieval.mode=soft_positive", *MEMORY],
    "hierarchical + retrieval feature_aug": [*BASE, "retrieval.mode=feature_aug", *MEMORY],
    "hierarchical + auxiliary SSL on silent clips": [*BASE, "ssl_aux.weight=0.5"],
    "hierarchical + video-grouped clip batches": [*BASE, *GROUPED],
    "hierarchical, CNN tower": [*CNN],
    "hierarchical, CNN tower + video-grouped clip batches": [*CNN, *GROUPED],
    "hierarchical, CNN tower + grouped + retrieval soft_positive (the first demo)": FIRST_DEMO,
    "ImageNet tower, clip only": [*IMAGENET, "train.video_every=0"],
    "ImageNet tower, hierarchical": IMAGENET,
    "ImageNet tower, hierarchical + retrieval soft_positive (the demo)": DEMO,
    "ImageNet tower fully locked (projection only), hierarchical": [*IMAGENET, "model.lock_image_unlocked_groups=0"],
    # Initialisation: the same network from random weights, nothing locked (BatchNorm learns). Without
    # retrieval: with it, the unlocked tower at 160 px was OOM-killed at 23 GiB resident on a 24 GiB machine.
    "EfficientNet-Lite0 from scratch, hierarchical": [*IMAGENET, *RANDOM_INIT_MODEL, "model.image_size=160"],
    # Input size against time per step (the frame cache's short side is 160 px).
    **{f"the demo at {size} px": [*DEMO, f"model.image_size={size}"] for size in (64, 96, 128)},
}
METRICS = {  # column -> path in the row
    "phase acc. (26+1 classes)": ("phase", "video_accuracy"),
    "phase F1": ("phase", "video_f1"),
    "phase acc., surgery type known": ("phase", "given_group", "video_accuracy"),
    "tool mAP": ("tools", "mAP"),
    "surgery-type acc.": ("surgery_type", "accuracy"),
    "text->video R@5": ("retrieval", "text_to_video", "R@5"),
    "silent top-4 same surgery type": ("bank", "label_agreement"),
}


def ensure_data(data_dir: Path) -> tuple[Path, Path]:
    """The synthetic set and its ground-truth dataset root under ``data_dir`` (built when missing)."""
    # lazy: results_readme, perf_train_step and the tests import the variant table without the training stack
    from ophclip.demo import run_demo

    synth, root = data_dir / "synth", data_dir / "root"
    if not (synth / "metadata.csv").is_file() or not (root / "videos.parquet").is_file():
        run_demo(data_dir, stages=["synth", "ground_truth_root"])
    return synth, root


def ssl_init_variant(vision: Path) -> tuple[str, list[str]]:
    """The ablation row for an SSL-pretrained tower: the best row of the same tower, started from it.

    The row is named after the SSL recipe (method and steps, from ``vision_config.json``), so
    towers from different recipes get rows (and cached runs) of their own.
    """
    from ophclip.ssl import ssl_recipe  # lazy: as in ensure_data (the SSL export imports torch)

    model, how = ssl_recipe(vision)
    recipe = f"SSL-initialised by {how}"
    init = f"model.init_vision_from={vision}"
    if model == "OphCLIP-tiny-MiniLM":
        return f"hierarchical, {recipe}", [*BASE, init]
    if model == "OphCLIP-tiny-RN-MiniLM":
        return f"the first demo, {recipe}", [*FIRST_DEMO, init]
    if model == "OphCLIP-EffNetLite0-MiniLM":  # ImageNet + SSL (OVFM's order): the SSL tower replaces ImageNet's
        return f"ImageNet tower, hierarchical, {recipe}", [*IMAGENET, init]
    return f"hierarchical, {model}, {recipe}", [*OFF, f"model.name={model}", init]


def run_one(variant: str, seed: int, overrides: list[str], synth: Path, root: Path, run_dir: Path,
            steps: int | None) -> dict:
    """Pretrain one variant with one seed, evaluate it zero-shot and against the silent bank; cache the row."""
    # lazy: as in ensure_data (training, evaluation and the bank import torch)
    from ophclip.bank import bank_gallery, build_bank
    from ophclip.datasets import BenchmarkConfig
    from ophclip.demo import packaged_config
    from ophclip.eval.config import ModelRef, ZeroShotConfig
    from ophclip.eval.run import run_zeroshot_config
    from ophclip.train import PretrainConfig, pretrain

    row_path = run_dir / "row.json"
    if row_path.is_file():
        return json.loads(row_path.read_text())
    extra = [f"train.steps={steps}"] if steps else []
    cfg = load_config(PretrainConfig, packaged_config("pretrain_demo.yaml"),
                      [f"data.root={root}", f"train.output_dir={run_dir / 'pretrain'}", f"train.seed={seed}",
                       "log.tensorboard=false", *overrides, *extra])
    t0 = time.perf_counter()
    summary = pretrain(cfg, progress=False)
    train_s = time.perf_counter() - t0
    model_dir = run_dir / "pretrain" / "final"
    zs = ZeroShotConfig(benchmark=BenchmarkConfig(name="synthetic", root=str(synth)),
                        model=ModelRef(name=str(model_dir)), out=str(run_dir / "zeroshot"))
    zs.eval.seed = 0
    result = run_zeroshot_config(zs, progress=False)
    build_bank(str(model_dir), root, run_dir / "bank", n_frames=cfg.data.video_frames, progress=False)
    gallery = bank_gallery(run_dir / "bank", run_dir / "bank_gallery.png", labels_csv=synth / "surgery_types.csv", k=4)
    row = {
        "variant": variant, "seed": seed, "overrides": overrides, "steps": cfg.train.steps, "train_s": round(train_s, 1),
        "samples_per_s": summary.get("samples_per_s"),
        "phase": {k: result["phase"][k] for k in ("video_accuracy", "video_f1", "pooled_accuracy")}
        | {"given_group": result["phase"]["given_group"], "chance": result["phase"]["chance"]},
        "tools": {"mAP": result["tools"]["mAP"], "chance": result["tools"]["chance"]["mAP"]},
        "surgery_type": {"accuracy": result["surgery_type"]["accuracy"]},
        "retrieval": {"text_to_video": result["retrieval"]["text_to_video"]},
        "bank": {"label_agreement": gallery["label_agreement"]},
    }
    atomic_write_json(row_path, row)
    return row


def _get(row: dict, path: tuple[str, ...]) -> float:
    value = row
    for key in path:
        value = value[key]
    return float(value)


def aggregate(rows: list[dict]) -> dict[str, dict]:
    """variant -> {column: {mean, std, values}} over its seeds, in VARIANTS order."""
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out[variant] = {"seeds": [r["seed"] for r in mine], "train_s": float(np.mean([r["train_s"] for r in mine]))}
        for column, path in METRICS.items():
            values = [_get(r, path) for r in mine]
            out[variant][column] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    return out


def markdown(table: dict[str, dict], chance: dict[str, float]) -> str:
    head = "| variant | seeds | " + " | ".join(METRICS) + " | train s |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for variant, cells in table.items():
        vals = " | ".join(f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" for c in METRICS)
        lines.append(f"| {variant} | {len(cells['seeds'])} | {vals} | {cells['train_s']:.0f} |")
    lines.append("| chance | | " + " | ".join(f"{chance.get(c, float('nan')):.3f}" for c in METRICS) + " | |")
    return "\n".join(lines) + "\n"


def chance_row(row: dict, synth: Path) -> dict[str, float]:
    """Chance levels from the evaluation itself (and the silent pool's surgery-type shares)."""
    meta = pd.read_csv(synth / "metadata.csv", dtype=str)
    train = meta[meta["split"] != "eval"]
    silent = train[train["kind"] == "silent"]["surgery_type"].value_counts(normalize=True)
    narrated = train[train["kind"] == "narrated"]["surgery_type"]
    return {
        "phase acc. (26+1 classes)": row["phase"]["chance"]["uniform_accuracy"],
        "phase F1": row["phase"]["chance"]["random_video_f1"],
        "phase acc., surgery type known": row["phase"]["given_group"]["chance_uniform_accuracy"],
        "tool mAP": row["tools"]["chance"],
        "surgery-type acc.": 1.0 / meta["surgery_type"].nunique(),
        "text->video R@5": float("nan"),
        "silent top-4 same surgery type": float(np.mean([silent.get(t, 0.0) for t in narrated])),
    }


def data_conditions(synth: Path, root: Path) -> str:
    """What the rows were measured on, for the README: the dataset's size and the frame cache's resolution."""
    meta = pd.read_csv(synth / "metadata.csv", dtype=str)
    counts = meta.groupby(["split"]).size().to_dict()
    frames = json.loads((root / "run.json").read_text()).get("config", {}) if (root / "run.json").is_file() else {}
    side = frames.get("short_side", "?")
    return (f"Data: {counts.get('narrated_pretrain', 0)} narrated, {counts.get('silent_pretrain', 0)} silent and "
            f"{counts.get('eval', 0)} held-out videos, frame cache at {side} px; prompts "
            "`ophclip/prompts/synthetic.yaml`")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("/tmp/ophclip_ablation_data"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=None, help=f"subset of: {'; '.join(VARIANTS)}")
    p.add_argument("--ssl-init", type=Path, nargs="+", default=None,
                   help="`ophclip ssl` output vision/ folders: each adds an SSL-initialised row for its tower")
    p.add_argument("--steps", type=int, default=None, help="override the demo's train.steps (default: the demo's)")
    p.add_argument("--cached-only", action="store_true", help="tabulate the finished runs only; train nothing")
    p.add_argument("--title", default=None, help="the table's title in README (what this ablation asks)")
    args = p.parse_args(argv)
    keep_freed_memory()  # as the CLI does, so `train s` is what `ophclip pretrain` takes
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)

    variants = dict(VARIANTS)
    for vision in args.ssl_init or []:
        name, overrides = ssl_init_variant(vision)
        variants[name] = overrides
    chosen = args.variants or list(variants)
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; variants: {'; '.join(variants)}")
    synth, root = ensure_data(args.data)
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    for seed in args.seeds:  # seed-major, so an early stop still has every variant
        for variant in chosen:
            slug = variant.split(" (")[0].replace(" + ", "+").replace(", ", "+").replace(" ", "_")
            if args.cached_only and not (args.out / slug / f"seed{seed}" / "row.json").is_file():
                continue
            logger.info("%s, seed %d", variant, seed)
            row = run_one(variant, seed, variants[variant], synth, root, args.out / slug / f"seed{seed}", args.steps)
            rows.append(row)
            logger.info("  phase acc %.3f (surgery known %.3f), %.0f s", row["phase"]["video_accuracy"],
                        row["phase"]["given_group"]["video_accuracy"], row["train_s"])
    table = aggregate(rows)
    chance = chance_row(rows[0], synth)
    md = markdown(table, chance)
    # The command that trains what is missing and tabulates; --cached-only would only re-tabulate.
    command = command_line("benchmarks.ablation", argv, drop=("--cached-only",))
    result = {"started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
              "command": command,
              "processor": platform.processor(), "title": args.title, "conditions": data_conditions(synth, root),
              "variants": variants, "table": table, "chance": chance, "rows": rows}
    return write_results(args.out, "ablation", result, md)


if __name__ == "__main__":
    main()
