"""Frozen-feature quality of four vision towers on the synthetic set: does SSL pretraining help?

    python -m benchmarks.ssl_probe --synth DIR --ssl-vision runs/ssl/vision \\
        --scratch runs/ophclip/final --ssl-init runs/ophclip_ssl_init/final

Rows: random init, SSL-pretrained (``ophclip ssl`` output), OphCLIP pretrained from scratch,
OphCLIP pretrained from the SSL tower (``model.init_vision_from``). Each gets a linear probe
(logistic regression on frame features of the narrated pretraining videos, tested on the
held-out videos, 1 fps) and a cosine kNN, through ``ophclip probe``'s own code. Markdown + JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from data_pipeline._io import atomic_write_json, atomic_write_text


def tower_folder(out: Path, model_name: str, vision: Path | None, seed: int = 0) -> Path:
    """A save_pretrained folder of ``model_name`` with random weights, its vision tower from ``vision`` if given."""
    import ophclip
    from ophclip.ssl import load_vision_init

    if (out / "model.safetensors").is_file():  # made by an earlier run
        return out
    torch.manual_seed(seed)
    model = ophclip.create_model(model_name)
    if vision is not None:
        load_vision_init(model, vision)
    model.save_pretrained(out)
    return out


def probe(model_dir: Path, synth: Path, out: Path) -> dict:
    from benchmarks.run import run_probe
    from ophclip.evaluate import BenchmarkConfig, ModelRef, ProbeConfig

    cfg = ProbeConfig(benchmark=BenchmarkConfig(name="synthetic", root=str(synth), split="eval"),
                      model=ModelRef(name=str(model_dir)), train_split="narrated_pretrain", out=str(out))
    cfg.eval.fps = 1.0
    cfg.probe.fractions, cfg.probe.seeds = [1.0], [0]
    return run_probe(cfg, progress=False)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", type=Path, required=True)
    p.add_argument("--ssl-vision", type=Path, required=True, help="the vision/ folder written by `ophclip ssl`")
    p.add_argument("--scratch", type=Path, required=True, help="OphCLIP pretrained from random init (final/)")
    p.add_argument("--ssl-init", type=Path, required=True, help="OphCLIP pretrained with model.init_vision_from")
    p.add_argument("--model-name", default="OphCLIP-tiny-MiniLM")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ssl_probe"))
    args = p.parse_args(argv)

    models = {
        "random init": tower_folder(args.out / "random_init_model", args.model_name, None),
        "SSL-pretrained": tower_folder(args.out / "ssl_model", args.model_name, args.ssl_vision),
        "OphCLIP from scratch": args.scratch,
        "OphCLIP initialised from SSL": args.ssl_init,
    }
    rows = {}
    for label, folder in models.items():
        r = probe(folder, args.synth, args.out / label.replace(" ", "_"))
        full = r["fractions"]["1"]
        rows[label] = {"model": str(folder), "linear_accuracy": full["video_accuracy"]["mean"],
                       "linear_f1": full["video_f1"]["mean"], "knn_accuracy": r["knn"]["video_accuracy"],
                       "knn_f1": r["knn"]["video_f1"], "knn_k": r["knn"]["k"]}
    lines = ["| vision tower | linear probe acc. | linear probe F1 | kNN acc. | kNN F1 |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['linear_accuracy']:.3f} | {v['linear_f1']:.3f} | {v['knn_accuracy']:.3f} | {v['knn_f1']:.3f} |"
              for k, v in rows.items()]
    md = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "ssl_probe.md", md)
    result = {"rows": rows, "model_name": args.model_name,
              "protocol": "train: narrated_pretrain videos at 1 fps; test: eval videos; 27 phases"}
    atomic_write_json(args.out / "ssl_probe.json", result)
    print(md)
    return result


if __name__ == "__main__":
    main()
