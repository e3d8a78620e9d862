"""Session-wide test set-up: offline hubs, and the tiny synthetic dataset built once and shared.

Under pytest-xdist (``make test`` runs ``-n 2``) each worker is its own session; the costly
fixtures are built once per run all the same, by whichever worker gets there first
(:func:`built_once`), and read by the others.

``synth_tiny_dir``   the tiny preset (configs/synth_tiny.yaml) generated once per session
``synth_tiny_root``  a dataset root built from its ground truth (no ASR): frames at 4 fps, short side 64
"""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub or transformers: a hub miss retries for ~96 s.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from filelock import FileLock  # noqa: E402

from ophclip.allocator import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as the CLI does: training steps in tests would otherwise spend their time in page faults

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # The cores are shared by the xdist workers: intra-op threads beyond a worker's share only spin-wait.
    import torch  # noqa: E402

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYNTH_TINY_CONFIG = REPO / "configs" / "synth_tiny.yaml"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A folder ``build(folder)`` fills once per test run, shared by every xdist worker.

    Without xdist this is ``tmp_path_factory.mktemp(name)``. With it, the folder sits in the
    run's common temporary root; a lock makes the first worker build it and the others wait,
    and a marker file says the build finished (a half-built folder is never reused).
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            done.touch()
    return folder


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

    return built_once(tmp_path_factory, "synth_tiny",
                      lambda out: generate_dataset(synth_tiny_config, out, progress=False))


@pytest.fixture(scope="session")
def synth_tiny_root(tmp_path_factory, synth_tiny_dir) -> Path:
    from data_pipeline.synth import build_root_from_ground_truth

    return built_once(tmp_path_factory, "synth_tiny_root", lambda root: build_root_from_ground_truth(
        synth_tiny_dir, root, fps=4.0, short_side=64, workers=2, progress=False))
