"""Fixtures of the benchmark-adapter tests: the shipped fixture folder, the real files, the synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "benchmarks" / "fixtures"


def real_dir() -> Path:
    """../shared/real next to the checkout, or $OPHCLIP_REAL_DIR."""
    env = os.environ.get("OPHCLIP_REAL_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "real").resolve()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def real_cataract101() -> Path:
    path = real_dir() / "cataract-101"
    if not (path / "annotations.csv").is_file():
        pytest.skip(f"real Cataract-101 annotation files not found at {path} (set OPHCLIP_REAL_DIR)")
    return path


@pytest.fixture(scope="session")
def real_ophnet() -> Path:
    path = real_dir() / "ophnet"
    if not (path / "OphNet2024_loca_challenge.csv").is_file():
        pytest.skip(f"real OphNet annotation files not found at {path} (set OPHCLIP_REAL_DIR)")
    return path


@pytest.fixture(scope="session")
def eval_synth_dir(request, tmp_path_factory) -> Path:
    """The session's tiny synthetic set (tests/conftest.py's ``synth_tiny_dir``), or one made here."""
    try:
        return Path(request.getfixturevalue("synth_tiny_dir"))
    except pytest.FixtureLookupError:
        pass
    from data_pipeline.synth.config import preset
    from data_pipeline.synth.generate import generate_dataset

    out = tmp_path_factory.mktemp("synth_tiny_eval")
    generate_dataset(preset("tiny", workers=1), out, progress=False)
    return out
