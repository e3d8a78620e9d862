"""Fixtures for the trainer tests: tiny dataset roots built here, and a tiny real OphCLIP config.

The dataset root is *structured*: each phase paints its frames in its own colour and its
clips are narrated with the phase's own sentence, so a model can learn the pairing and
the loss can fall within a few steps. Frames go through the frame-cache contract
(``frames/<video_id>.npy`` + ``write_index``) and tables through ``write_manifest``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data_pipeline.frame_cache import write_index  # noqa: E402
from data_pipeline.manifests import write_manifest  # noqa: E402

PHASES = [
    ("incision", (220, 40, 40)),
    ("capsulorhexis", (40, 200, 40)),
    ("phacoemulsification", (40, 60, 220)),
    ("lens implantation", (220, 200, 40)),
]
SURGERIES = [("cataract surgery", 0), ("vitrectomy", 60)]

# A real OphCLIP architecture, small enough for a CPU test: open_clip ViT + open_clip text transformer.
TINY_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"type": "open_clip", "context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    "temporal_cfg": {"pool": "mean"},
    "text_frozen": False,
    "logit_scale_learnable": True,
    "init_temperature": 0.07,
}
TINY_MODEL_NAME = "OphCLIP-test-micro"


def build_dataset_root(
    root: Path,
    *,
    n_videos: int = 8,
    fps: float = 4.0,
    phase_seconds: float = 6.0,
    size: int = 32,
    n_silent: int = 2,
    seed: int = 0,
) -> Path:
    """Write a complete dataset root (manifests + frame cache) and return it."""
    rng = np.random.default_rng(seed)
    frames_dir = root / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    videos, clips, texts, index = [], [], [], []
    per_phase = int(phase_seconds * fps)
    for v in range(n_videos + n_silent):
        video_id = f"vid{v:03d}"
        silent = v >= n_videos
        surgery, tint = SURGERIES[v % len(SURGERIES)]
        order = rng.permutation(len(PHASES))
        chunks = []
        for k, p in enumerate(order):
            name, colour = PHASES[p]
            base = np.clip(np.array(colour) + tint, 0, 255)
            chunk = base + rng.integers(-25, 26, size=(per_phase, size, size, 3))
            chunks.append(np.clip(chunk, 0, 255).astype(np.uint8))
            if not silent:
                start = k * phase_seconds
                clips.append(
                    {
                        "clip_id": f"{video_id}_c{k}",
                        "video_id": video_id,
                        "start": start + 0.5,
                        "end": start + phase_seconds - 0.5,
                        "narration": f"now the {name}",
                        "text": f"the surgeon performs the {name}",
                        "rewrite_model": "test",
                    }
                )
        array = np.concatenate(chunks)
        np.save(frames_dir / f"{video_id}.npy", array)
        index.append(
            {"video_id": video_id, "file": f"{video_id}.npy", "n_frames": len(array), "fps": fps,
             "height": size, "width": size, "source_sha256": ""}
        )
        videos.append(
            {"video_id": video_id, "path": f"videos/{video_id}.mp4", "sha256": "", "duration_s": len(array) / fps,
             "fps": fps, "width": size, "height": size, "has_audio": not silent,
             "kind": "silent" if silent else "narrated", "title": f"{surgery} {v}", "description": "",
             "status": "ok", "error": ""}
        )
        if not silent:
            steps = ", ".join(PHASES[p][0] for p in order)
            texts.append(
                {"video_id": video_id, "title": f"{surgery} {v}", "summary_json": json.dumps({"steps": steps}),
                 "summary_text": f"{surgery}: {steps}", "summarize_model": "test"}
            )
    write_index(frames_dir, index)
    write_manifest(root, "videos", pd.DataFrame(videos))
    write_manifest(root, "clips", pd.DataFrame(clips))
    write_manifest(root, "video_texts", pd.DataFrame(texts))
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on a shared CPU: intra-op threads only add spin-waiting (a backward ran 20x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    return build_dataset_root(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model_configs") / f"{TINY_MODEL_NAME}.json"
    path.write_text(json.dumps(TINY_MODEL), encoding="utf-8")
    return path


def tiny_overrides(root: Path, model_config: Path, out: Path, **extra) -> list[str]:
    """Dotted overrides for a fast run of the micro model on ``root``."""
    values = {
        "data.root": str(root),
        "model.name": TINY_MODEL_NAME,
        "model.config_file": str(model_config),
        "data.clip_frames": 2,
        "data.video_frames": 4,
        "data.max_narrations_per_video": 3,
        "train.output_dir": str(out),
        "train.steps": 6,
        "train.clip_batch_size": 8,
        "train.video_batch_size": 4,
        "train.video_every": 2,
        "train.warmup_steps": 2,
        "train.lr": 1e-3,
        "train.save_every": 3,
        "log.every": 1,
        "log.tensorboard": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def reference_loss(level, features, logit_scale, neighbours=None):
    """A plain single-process InfoNCE (a test double for ophclip.loss, used where the loss itself is not under test)."""
    import torch
    import torch.nn.functional as F

    def infonce(a, b):
        logits = logit_scale * a @ b.T
        labels = torch.arange(len(a))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    if level == "clip":
        clip = infonce(features["video"], features["text"])
        return {"total": clip, "clip": clip}
    video = infonce(features["video"], features["text"])
    narration = infonce(features["video"], features["narration"])
    return {"total": video + narration, "video_title": video, "video_narration": narration}


def offline_env() -> dict[str, str]:
    """The environment of a training subprocess: offline hubs, one thread (the cores are shared)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def kill_after_first_checkpoint(command: list[str], output_dir: Path, timeout_s: float = 240) -> int:
    """Start ``command`` (a training run writing ``output_dir``), SIGKILL it once its first checkpoint
    exists, and return the step that checkpoint holds."""
    proc = subprocess.Popen(command, env=offline_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = output_dir / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + timeout_s
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    return int(torch.load(latest, weights_only=True)["step"])
