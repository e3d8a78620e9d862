"""`ophclip pipeline run/status` through the real typer app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data_pipeline.config import PipelineConfig
from data_pipeline.errors import InputError
from ophclip.cli import _register_all, app
from ophclip.config import load_config

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cli():
    if not any(getattr(g, "name", None) == "pipeline" for g in app.registered_groups):
        _register_all()
    return CliRunner()


def test_shipped_configs_load():
    paths = sorted((REPO / "configs").glob("pipeline_*.yaml"))
    assert paths
    for path in paths:
        cfg = load_config(PipelineConfig, path)
        assert cfg.segment.max_clip_s >= cfg.segment.min_clip_s


def test_run_then_status(cli, media_dir, tmp_path):
    out = tmp_path / "root"
    r = cli.invoke(app, ["pipeline", "run", str(REPO / "configs/pipeline_fast.yaml"),
                         f"input.videos={media_dir / 'list.csv'}", f"output={out}", "frames.short_side=32",
                         "run.progress=false"])
    assert r.exit_code == 0, r.output
    assert "videos_narrated" in r.output
    assert len(pd.read_parquet(out / "videos.parquet")) == 7
    assert load_config(PipelineConfig, out / "config.yaml").output == str(out)
    s = cli.invoke(app, ["pipeline", "status", str(out)])
    assert s.exit_code == 0, s.output
    assert "transcribe" in s.output and "last completed run" in s.output


def test_missing_input_raises_a_named_error(cli, tmp_path):
    r = cli.invoke(app, ["pipeline", "run", str(REPO / "configs/pipeline_fast.yaml"),
                         f"input.videos={tmp_path / 'nope'}", f"output={tmp_path / 'o'}"])
    assert isinstance(r.exception, InputError)
    assert "not a folder or a .csv list" in str(r.exception) and "nope" in str(r.exception)


def test_bad_config_key_is_one_clean_line_from_the_entry_point():
    r = subprocess.run([sys.executable, "-c", "from ophclip.cli import main; main()", "pipeline", "run",
                        str(REPO / "configs/pipeline_fast.yaml"), "asr.beam=3"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    err = " ".join(r.stderr.split())  # rich wraps long lines
    assert "unknown key" in err and "beam" in err and "Traceback" not in err
