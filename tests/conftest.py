"""Session-wide test set-up: offline hubs, and the tiny synthetic dataset built once and shared.

``synth_tiny_dir``   the tiny preset (configs/synth_tiny.yaml) generated once per session
``synth_tiny_root``  a dataset root built from its ground truth (no ASR): frames at 4 fps, short side 64
"""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub or transformers: a hub miss retries for ~96 s.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

from ophclip.allocator import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as the CLI does: training steps in tests would otherwise spend their time in page faults

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYNTH_TINY_CONFIG = REPO / "configs" / "synth_tiny.yaml"


def load_synth_tiny_config(*overrides: str):
    from data_pipeline.synth import SynthConfig
    from ophclip.config import load_config

    return load_config(SynthConfig, SYNTH_TINY_CONFIG, list(overrides))


@pytest.fixture(scope="session")
def synth_tiny_config():
    return load_synth_tiny_config()


@pytest.fixture(scope="session")
def synth_tiny_dir(tmp_path_factory, synth_tiny_config) -> Path:
    from data_pipeline.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth_tiny")
    generate_dataset(synth_tiny_config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def synth_tiny_root(tmp_path_factory, synth_tiny_dir) -> Path:
    from data_pipeline.synth import build_root_from_ground_truth

    root = tmp_path_factory.mktemp("synth_tiny_root")
    build_root_from_ground_truth(synth_tiny_dir, root, fps=4.0, short_side=64, workers=2, progress=False)
    return root
