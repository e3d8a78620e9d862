"""`ophclip synth` and `ophclip demo` end to end, on very small datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from ophclip.demo import STAGES, run_demo
from ophclip.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["n_narrated=1", "n_silent=1", "n_eval=1", "duration_s=[4.0, 5.0]", "width=64", "height=48", "workers=1",
         "min_phase_s=0.25"]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `ophclip ARGS` in this process through the real entry point (error handling included).

    Only the synth command group is registered: the others import torch and friends, which this
    test does not need (tests/ophclip/test_cli.py covers the full app).
    """
    import ophclip.cli
    from ophclip.cli import main

    monkeypatch.setattr(ophclip.cli, "COMMAND_MODULES", ("synth",))
    monkeypatch.setattr(sys, "argv", ["ophclip", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), out, err


def test_synth_command_writes_the_dataset_and_its_config(tmp_path, monkeypatch, capsys):
    out = tmp_path / "synth"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "synth", str(CONFIGS / "synth_tiny.yaml"), "--out", str(out),
                                   *SMALL)
    assert code == 0, stderr
    assert "videos" in stdout and "3" in stdout  # the summary table
    meta = pd.read_csv(out / "metadata.csv")
    assert len(meta) == 3 and set(meta["split"]) == {"narrated_pretrain", "silent_pretrain", "eval"}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["n_narrated"] == 1 and saved["width"] == 64 and saved["duration_s"] == [4.0, 5.0]
    assert json.loads((out / "synth.json").read_text())["counts"]["videos"] == 3
    for png in ("contact_sheet.png", "phase_timeline.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 200


def test_synth_command_reports_a_bad_key_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, stderr = run_cli(monkeypatch, capsys, "synth", str(CONFIGS / "synth_tiny.yaml"), "--out",
                              str(tmp_path / "x"), "n_narated=3")
    assert code == 2
    assert "n_narated" in stderr and "synth_tiny.yaml" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x" / "metadata.csv").exists()


# The model stages (pretrain, zeroshot, distill, stream) have their own tests; here the data stages run.
DATA_STAGES = ["synth", "ground_truth_root", "phase_baseline"]


def test_demo_runs_the_data_stages_and_writes_the_report(tmp_path):
    report = run_demo(tmp_path, overrides=SMALL, stages=DATA_STAGES)
    text = report.read_text()
    for stage in STAGES:
        assert (f"## {stage.title}" in text) == (stage.name in DATA_STAGES)
    counts = json.loads((tmp_path / "counts.json").read_text())
    synth = json.loads((tmp_path / "synth" / "synth.json").read_text())
    assert counts["synth"]["counts"]["frames"] == synth["counts"]["frames"]
    assert f"{synth['counts']['frames']:,} frames" in text
    assert set(counts["timings_s"]) == set(DATA_STAGES)
    assert 0.0 <= counts["phase_baseline"]["accuracy"] <= 1.0
    for png in ("contact_sheet.png", "phase_timeline.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in text


def test_demo_rejects_unknown_stage(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo stage 'trian'"):
        run_demo(tmp_path, stages=["trian"])


def test_demo_rejects_synth_overrides_when_synth_does_not_run(tmp_path):
    # `--pretrain a=1 b=2` passes b=2 as a synth override; it must not vanish silently.
    with pytest.raises(ConfigError, match="--pretrain KEY=VALUE"):
        run_demo(tmp_path, overrides=["loss.clip_weight=2"], stages=["pretrain"])
