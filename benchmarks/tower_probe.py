"""Linear probes of the EfficientNet-Lite0 tower: does OphCLIP pretraining keep and sharpen ImageNet's features?

    python -m benchmarks.tower_probe --synth DIR --pretrained runs/recipe_seed0/final runs/recipe_seed1/final

Rows: the tower with random weights, the ImageNet tower as shipped (frozen), and the
OphCLIP-pretrained folders (one per seed; mean ± std). Each is probed through ``ophclip
probe``'s code (logistic regression on the narrated pretraining videos' frames, tested on
the held-out videos, 1 fps, 27 phases), on two features:

* ``embedding``: the normalised image embedding zero-shot uses. For the untrained towers
  the projection into the text space is random (1280 -> 384).
* ``trunk``: the tower's pooled 1280-d features before the projection (the issue's calibration).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ophclip
from benchmarks._machine import command_line, write_results
from ophclip.datasets import BenchmarkConfig
from ophclip.eval.config import ModelRef, ProbeConfig
from ophclip.eval.run import run_probe

MODEL = "OphCLIP-EffNetLite0-MiniLM"
FEATURES = ("embedding", "trunk")


class TrunkFeatures(torch.nn.Module):
    """A model whose ``encode_image`` is the timm trunk's pooled features (before OphCLIP's projection)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.model.visual.trunk(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_video(self, video: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_video(video, normalize=normalize)


def probe(name: str, pretrained: str | None, feature: str, synth: Path, out: Path, image_size: int | None) -> dict:
    cfg = ProbeConfig(benchmark=BenchmarkConfig(name="synthetic", root=str(synth), split="eval"),
                      model=ModelRef(name=name, pretrained=pretrained), train_split="narrated_pretrain", out=str(out))
    cfg.eval.fps = 1.0
    cfg.probe.fractions, cfg.probe.seeds = [1.0], [0]
    torch.manual_seed(0)  # the untrained projection
    # A saved folder keeps the size it was trained at; the registry rows take the recipe's.
    size = {} if Path(name).is_dir() else {"image_size": image_size}
    model, _, preprocess = ophclip.create_model_and_transforms(name, pretrained=pretrained, **size)
    features = TrunkFeatures(model) if feature == "trunk" else model
    result = run_probe(cfg, progress=False, model_and_preprocess=(features, preprocess))
    full = result["fractions"]["1"]
    return {"linear_accuracy": full["video_accuracy"]["mean"], "linear_f1": full["video_f1"]["mean"],
            "knn_accuracy": result["knn"]["video_accuracy"]}


def row(towers: list[tuple[str, str | None]], synth: Path, out: Path, image_size: int | None) -> dict:
    cells: dict = {"towers": [t[0] for t in towers]}
    for feature in FEATURES:
        runs = [probe(name, pretrained, feature, synth, out / feature / f"tower{i}", image_size)
                for i, (name, pretrained) in enumerate(towers)]
        for key in runs[0]:
            values = np.array([r[key] for r in runs])
            cells[f"{feature}/{key}"] = {"mean": float(values.mean()), "std": float(values.std()),
                                         "values": values.tolist()}
    return cells


def markdown(rows: dict[str, dict]) -> str:
    cols = [f"{f}/{k}" for f in FEATURES for k in ("linear_accuracy", "linear_f1", "knn_accuracy")]
    lines = ["| tower | towers | " + " | ".join(c.replace("/", ": ").replace("_", " ") for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for label, cells in rows.items():
        fmt = [f"{cells[c]['mean']:.3f}" + (f" ± {cells[c]['std']:.3f}" if len(cells["towers"]) > 1 else "")
               for c in cols]
        lines.append(f"| {label} | {len(cells['towers'])} | " + " | ".join(fmt) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", type=Path, required=True)
    p.add_argument("--pretrained", type=Path, nargs="+", required=True,
                   help="OphCLIP-pretrained save_pretrained folders of the EfficientNet-Lite0 model (one per seed)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/tower_probe"))
    p.add_argument("--image-size", type=int, default=160,
                   help="input size of the random and ImageNet rows (the demo recipe's; pretrained folders keep theirs)")
    args = p.parse_args(argv)
    towers = {
        "random init": [(MODEL, None)],
        "ImageNet, frozen (as shipped)": [(MODEL, "imagenet")],
        "OphCLIP-pretrained from ImageNet": [(str(folder), None) for folder in args.pretrained],
    }
    rows = {label: row(t, args.synth, args.out / label.split(",")[0].replace(" ", "_"), args.image_size)
            for label, t in towers.items()}
    md = markdown(rows)
    command = command_line("benchmarks.tower_probe", argv)
    result = {"rows": rows, "order": list(rows), "image_size": args.image_size, "command": command,
              "protocol": "train: narrated_pretrain videos at 1 fps; test: eval videos; 27 phases; "
              "logistic regression (C=1, standardised) and cosine kNN from ophclip.eval.probe"}
    return write_results(args.out, "tower_probe", result, md)


if __name__ == "__main__":
    main()
