"""Frozen-feature quality of four vision towers on the synthetic set: does SSL pretraining help?

    python -m benchmarks.ssl_probe --synth DIR --ssl-vision runs/ssl/vision \\
        --scratch runs/ophclip/final --ssl-init runs/ophclip_ssl_init/final

Rows: random init, SSL-pretrained (``ophclip ssl`` output), OphCLIP pretrained from scratch,
OphCLIP pretrained from the SSL tower (``model.init_vision_from``). Each gets a linear probe
(logistic regression on frame features of the narrated pretraining videos, tested on the
held-out videos, 1 fps) and a cosine kNN, through ``ophclip probe``'s own code. Markdown + JSON.

Every row takes one or more towers (seeds) and reports mean ± std over them. Random init gets
three seeds by default: on 12 test videos its spread is several points, and a single seed
once made a no-better SSL tower look like a gain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import ophclip
from ophbase.io import atomic_write_json
from ophclip.datasets import BenchmarkConfig
from ophclip.eval.config import ModelRef, ProbeConfig
from ophclip.eval.run import run_probe
from ophclip.ssl import load_vision_init, ssl_recipe

from ._machine import write_results


def tower_folder(out: Path, model_name: str, vision: Path | None, seed: int = 0) -> Path:
    """A save_pretrained folder of ``model_name`` with random weights, its vision tower from ``vision`` if given."""
    made_from = {"model_name": model_name, "vision": str(vision), "seed": seed}
    marker = out / "made_from.json"
    if (out / "model.safetensors").is_file() and marker.is_file() and json.loads(marker.read_text()) == made_from:
        return out  # made by an earlier run from the same tower (another --ssl-vision rebuilds it)
    torch.manual_seed(seed)
    model = ophclip.create_model(model_name)
    if vision is not None:
        load_vision_init(model, vision)
    model.save_pretrained(out)
    atomic_write_json(marker, made_from)
    return out


def probe(model_dir: Path, synth: Path, out: Path) -> dict:
    cfg = ProbeConfig(benchmark=BenchmarkConfig(name="synthetic", root=str(synth), split="eval"),
                      model=ModelRef(name=str(model_dir)), train_split="narrated_pretrain", out=str(out))
    cfg.eval.fps = 1.0
    cfg.probe.fractions, cfg.probe.seeds = [1.0], [0]
    return run_probe(cfg, progress=False)


METRICS = {"linear_accuracy": "linear probe acc.", "linear_f1": "linear probe F1", "knn_accuracy": "kNN acc.",
           "knn_f1": "kNN F1"}


def probe_row(folders: list[Path], synth: Path, out: Path) -> dict:
    """Mean and std of each metric over the towers in ``folders`` (one per seed)."""
    runs = []
    for i, folder in enumerate(folders):
        r = probe(folder, synth, out / f"run{i}")
        full = r["fractions"]["1"]
        runs.append({"linear_accuracy": full["video_accuracy"]["mean"], "linear_f1": full["video_f1"]["mean"],
                     "knn_accuracy": r["knn"]["video_accuracy"], "knn_f1": r["knn"]["video_f1"]})
    row: dict = {"models": [str(f) for f in folders], "runs": runs}
    for key in METRICS:
        values = np.array([run[key] for run in runs])
        row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
    return row


def cell(row: dict, key: str) -> str:
    """``mean`` for one tower, ``mean ± std`` over several."""
    if len(row.get("runs", [])) > 1:
        return f"{row[key]:.3f} ± {row[f'{key}_std']:.3f}"
    return f"{row[key]:.3f}"


ROWS = ("random init", "SSL-pretrained", "OphCLIP from scratch", "OphCLIP initialised from SSL")


def markdown(rows: dict[str, dict]) -> str:
    """The table, rows in :data:`ROWS` order (a JSON round trip sorts them), others after."""
    order = sorted(rows, key=lambda label: ROWS.index(label) if label in ROWS else len(ROWS))
    lines = ["| vision tower | towers | " + " | ".join(METRICS.values()) + " |", "|---|---|" + "---|" * len(METRICS)]
    lines += [f"| {label} | {len(rows[label].get('runs', [])) or 1} | "
              + " | ".join(cell(rows[label], k) for k in METRICS) + " |" for label in order]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", type=Path, required=True)
    p.add_argument("--ssl-vision", type=Path, nargs="+", required=True,
                   help="the vision/ folder(s) written by `ophclip ssl` (one per seed)")
    p.add_argument("--scratch", type=Path, nargs="+", required=True, help="OphCLIP pretrained from random init (final/)")
    p.add_argument("--ssl-init", type=Path, nargs="+", required=True,
                   help="OphCLIP pretrained with model.init_vision_from")
    p.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the random-init towers")
    p.add_argument("--model-name", default="OphCLIP-tiny-MiniLM")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ssl_probe"))
    args = p.parse_args(argv)

    out = args.out
    towers = {
        "random init": [tower_folder(out / f"random_init_model_seed{k}", args.model_name, None, seed=k)
                        for k in args.random_seeds],
        "SSL-pretrained": [tower_folder(out / f"ssl_model{i}", args.model_name, v) for i, v in enumerate(args.ssl_vision)],
        "OphCLIP from scratch": args.scratch,
        "OphCLIP initialised from SSL": args.ssl_init,
    }
    rows = {label: probe_row(folders, args.synth, out / label.replace(" ", "_")) for label, folders in towers.items()}
    md = markdown(rows)
    protocol = f"train: narrated_pretrain videos at 1 fps; test: eval videos; 27 phases; SSL: {ssl_recipe(args.ssl_vision[0])[1]}"
    result = {"rows": rows, "model_name": args.model_name, "protocol": protocol}
    return write_results(args.out, "ssl_probe", result, md)


if __name__ == "__main__":
    main()
