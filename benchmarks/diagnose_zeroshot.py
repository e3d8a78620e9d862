"""Is zero-shot phase recognition limited by the prompts or by the vision tower?

    python -m benchmarks.diagnose_zeroshot MODEL_DIR --synth DIR --root DIR

Classifies the held-out synthetic frames twice with the same frame embeddings: with the
prompt file's phase classifier, and with a *text oracle*, each phase's centroid of the
embeddings of the training narrations that the dataset root labels with that phase (the
sentences the model was trained against). If the oracle is no better than the prompts, the
prompts are not the bottleneck: the frame embeddings do not separate the phases.
Prints a table (plain and with the surgery type known; no smoothing and a 5-frame moving
average) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import ophclip
from data_pipeline.synth.taxonomy import phase_names
from ophbase.io import atomic_write_json
from ophclip.datasets import load_synthetic, resolve_prompt_file
from ophclip.eval.embed import embed_videos
from ophclip.eval.zero_shot import build_zero_shot_classifier
from ophclip.prompts import select_prompts


def phase_accuracy(emb, phases, classifier: torch.Tensor, window: int = 1, group_known: bool = False) -> float:
    """Mean over videos of per-frame argmax accuracy at the evaluated frames."""
    names = phases.class_names
    accs = []
    for vid, frames in emb.frames.items():
        scores = (torch.from_numpy(frames).float() @ classifier).numpy()
        if window > 1:
            kernel = np.ones(window) / window
            scores = np.stack([np.convolve(scores[:, j], kernel, mode="same") for j in range(scores.shape[1])], 1)
        if group_known:
            allowed = set(phases.group_classes[phases.video(vid)["group"]])
            scores = np.where([c in allowed for c in names], scores, -np.inf)
        truth = phases.labels[vid][emb.frame_index[vid]]
        accs.append(float(np.mean(scores.argmax(1) == truth)))
    return float(np.mean(accs))


def text_oracle(model, tokenizer, root: Path, class_names: list[str], fallback: torch.Tensor) -> torch.Tensor:
    """(D, K): per phase, the normalised mean embedding of its training narrations (fallback column if none)."""
    clips = pd.read_parquet(root / "clips.parquet")
    videos = pd.read_parquet(root / "videos.parquet")
    held_out = set(videos.loc[videos.get("split", pd.Series(dtype=str)) == "eval", "video_id"])
    clips = clips[~clips["video_id"].isin(held_out)]
    name_of = phase_names()
    with torch.no_grad():
        text = model.encode_text(tokenizer(list(clips["text"])), normalize=True)
    label = np.array([name_of.get(int(p)) for p in clips["phase_id"]])
    columns = [text[label == c].mean(0) if (label == c).any() else fallback[:, k] for k, c in enumerate(class_names)]
    return torch.nn.functional.normalize(torch.stack(columns), dim=-1).T


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--synth", type=Path, required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--prompts", default="synthetic", help="prompt YAML (or a shipped one by name, ophclip/prompts/)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnose_zeroshot.json"))
    args = p.parse_args(argv)

    model, _, preprocess = ophclip.create_model_and_transforms(args.model)
    tokenizer = ophclip.get_tokenizer(args.model)
    phases = load_synthetic(args.synth, split="eval").phases
    emb = embed_videos(model, preprocess, load_synthetic(args.synth, split="eval").source, phases, fps=1.0,
                       progress=False)
    phase_prompts = select_prompts(resolve_prompt_file(args.prompts), "phase", phases.class_names)
    prompts = build_zero_shot_classifier(model, tokenizer, phase_prompts)
    classifiers = {"prompts": prompts,
                   "text oracle (training narration centroids)": text_oracle(model, tokenizer, args.root,
                                                                            phases.class_names, prompts)}
    settings = [(w, g) for w in (1, 5) for g in (False, True)]
    rows = {name: {f"window {w}{', surgery known' if g else ''}": phase_accuracy(emb, phases, c, w, g)
                   for w, g in settings} for name, c in classifiers.items()}
    columns = list(next(iter(rows.values())))
    print("| classifier | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1))
    for name, vals in rows.items():
        print(f"| {name} | " + " | ".join(f"{vals[c]:.3f}" for c in columns) + " |")
    result = {"model": args.model, "classes": len(phases.class_names), "videos": len(emb.frames), "accuracy": rows}
    atomic_write_json(args.out, result)
    print(json.dumps({"written": str(args.out)}))
    return result


if __name__ == "__main__":
    main()
