"""`ophclip pretrain`: the shipped configs load, a run prints its summary, and bad input is one clean line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from ophclip.cli import _register_all, app
from ophclip.config import load_config
from ophclip.errors import ConfigError
from ophclip.train import PretrainConfig, validate

_register_all()
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize(("name", "model"), [("pretrain_tiny.yaml", "OphCLIP-tiny-MiniLM"),
                                           ("pretrain_demo.yaml", "OphCLIP-EffNetLite0-MiniLM")])
def test_shipped_configs_load_and_validate(name, model):
    cfg = load_config(PretrainConfig, CONFIGS / name, ["data.root=somewhere"])
    validate(cfg)
    assert cfg.model.name == model


def test_pretrain_runs_and_prints_a_summary_table(dataset_root, tiny_model_config, tmp_path):
    overrides = tiny_overrides(dataset_root, tiny_model_config, tmp_path / "run", **{"train.steps": 3, "data.num_workers": 0})
    result = CliRunner().invoke(app, ["pretrain", str(CONFIGS / "pretrain_tiny.yaml"), *overrides, "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "ophclip pretrain" in result.output and "loss/clip" in result.output
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    again = CliRunner().invoke(app, ["pretrain", str(CONFIGS / "pretrain_tiny.yaml"), *overrides, "--no-progress", "--resume", "latest"])
    assert again.exit_code == 0  # already at train.steps: resumes and finishes at once


def test_an_unknown_config_key_names_the_key_and_the_file():
    result = CliRunner().invoke(app, ["pretrain", str(CONFIGS / "pretrain_tiny.yaml"), "train.bogus=1"])
    assert isinstance(result.exception, ConfigError)  # main() prints it as one line (tests/ophclip/test_cli.py)
    assert "pretrain_tiny.yaml: unknown key train.'bogus' in TrainSection" in str(result.exception)
