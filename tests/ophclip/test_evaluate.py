"""End-to-end zero-shot evaluation: a known-answer double, streaming, reports, and the real model via the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from _eval_doubles import OracleModel, OracleTokenizer, oracle_preprocess
from PIL import Image

from ophclip.datasets import ArraySource, FrameLabels
from ophclip.eval.config import EvalOptions
from ophclip.eval.embed import embed_videos
from ophclip.eval.run import run_zero_shot
from ophclip.eval.zero_shot import build_zero_shot_classifier
from ophclip.prompts import parse_prompts, select_prompts

CLASSES = ["idle", "incision", "phaco"]
TOOLS = ["knife", "handpiece"]
PROMPTS = parse_prompts({
    "templates": ["a frame showing {}."],
    "phase": {"classes": {"idle": ["nothing"], "incision": ["a cut"], "phaco": ["ultrasound"]}},
    "tools": {"classes": {"knife": ["a knife"], "handpiece": ["a handpiece"]}},
})


def oracle_benchmark(lengths=(40, 25, 60), noise=0.0, seed=0):
    """Videos whose frame pixels equal 10 * class; ``noise`` of the frames show a wrong class."""
    rng = np.random.default_rng(seed)
    rows, labels, tools, arrays = [], {}, {}, {}
    for i, n in enumerate(lengths):
        vid = f"v{i}"
        y = np.repeat(np.arange(3), [n // 3, n // 3, n - 2 * (n // 3)])
        shown = np.where(rng.random(n) < noise, (y + 1) % 3, y)
        arrays[vid] = np.broadcast_to((10 * shown).astype(np.uint8)[:, None, None, None], (n, 4, 4, 3)).copy()
        labels[vid] = y
        tools[vid] = np.stack([y == 1, y == 2], axis=1).astype(np.int8)
        rows.append({"video_id": vid, "n_frames": n, "fps": 4.0, "split": "", "source": "", "annotation": "mem"})
    videos = pd.DataFrame(rows)
    phases = FrameLabels("oracle", "phase", CLASSES, videos.copy(), labels)
    tool_labels = FrameLabels("oracle_tools", "tools", TOOLS, videos.copy(), tools)
    return phases, tool_labels, ArraySource(arrays)


def oracle_model():
    model, tok = OracleModel(), OracleTokenizer()
    model.set_classes(build_zero_shot_classifier(model, tok, select_prompts(PROMPTS, "phase", CLASSES)).T)
    return model, tok


def test_phase_accuracy_with_the_group_known_argmaxes_over_the_group_only(tmp_path):
    phases, _, source = oracle_benchmark()
    model, tok = oracle_model()
    opts = EvalOptions(fps=None, batch_size=8, n_boot=0)
    plain = run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path / "a", phases=phases, opts=opts,
                          progress=False)
    assert "given_group" not in plain["phase"]
    # Every video's group allows idle and incision only, so its phaco frames cannot be right.
    phases.videos["group"] = "no_phaco"
    phases.group_classes = {"no_phaco": ["idle", "incision"]}
    out = run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path / "b", phases=phases, opts=opts,
                        progress=False)
    given = out["phase"]["given_group"]
    expected = np.mean([np.mean(phases.labels[v] != CLASSES.index("phaco")) for v in phases.video_ids])
    assert out["phase"]["video_accuracy"] == 1.0
    assert given["video_accuracy"] == pytest.approx(expected)
    assert given["mean_classes"] == 2 and given["chance_uniform_accuracy"] == 0.5
    phases.videos.loc[0, "group"] = "unknown"
    with pytest.raises(Exception, match="group 'unknown'"):
        run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path / "c", phases=phases, opts=opts,
                      progress=False)


def test_known_answers_and_report_files(tmp_path):
    phases, tools, source = oracle_benchmark()
    model, tok = oracle_model()
    out = run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path, phases=phases, tools=tools,
                        opts=EvalOptions(fps=None, batch_size=8, n_boot=50), progress=False)
    p = out["phase"]
    assert p["video_accuracy"] == 1.0 and p["pooled_f1"] == 1.0 and p["pooled_accuracy_ci"] == [1.0, 1.0]
    assert out["n_frames"] == 125 and p["chance"]["uniform_accuracy"] == pytest.approx(1 / 3)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["phase"]["per_video"]["v2"]["n_frames"] == 60
    table = pd.read_parquet(tmp_path / "predictions.parquet")
    assert (table.label == table.pred).all() and len(table) == 125
    assert set(out["tools"]["per_tool"]) == set(TOOLS) and 0 <= out["tools"]["mAP"] <= 1
    for png in ["confusion_matrix.png", "tool_ap.png", "ribbons/v0.png", "ribbons/v1.png", "ribbons/v2.png"]:
        with Image.open(tmp_path / png) as im:
            assert im.size[0] > 100
    report = (tmp_path / "report.md").read_text()
    assert "| accuracy, mean over videos | 1.000 [1.000, 1.000] |" in report


def test_smoothing_within_videos_removes_isolated_errors(tmp_path):
    phases, _, source = oracle_benchmark(lengths=(90, 90, 90), noise=0.15, seed=3)
    model, tok = oracle_model()
    raw = run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path / "raw", phases=phases,
                        opts=EvalOptions(fps=None, n_boot=0, plots=False), progress=False)["phase"]
    smooth = run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path / "smooth", phases=phases,
                           opts=EvalOptions(fps=None, n_boot=0, plots=False, smoothing_window=7), progress=False)["phase"]
    assert raw["pooled_accuracy"] == pytest.approx(1 - 0.15, abs=0.06)
    assert smooth["pooled_accuracy"] > raw["pooled_accuracy"] + 0.05


def test_frames_are_streamed_in_batches():
    n = 3000
    arrays = {"long": np.zeros((n, 4, 4, 3), np.uint8)}
    videos = pd.DataFrame([{"video_id": "long", "n_frames": n, "fps": 25.0, "split": "", "source": "", "annotation": ""}])
    labels = FrameLabels("long", "phase", CLASSES, videos, {"long": np.zeros(n, dtype=np.int64)})
    model, _ = oracle_model()
    emb = embed_videos(model, oracle_preprocess, ArraySource(arrays), labels, fps=None, batch_size=16,
                       video_frames=8, progress=False)
    frame_batches = model.image_batches[:-1]  # the last call is encode_video's 8 frames
    assert max(frame_batches) <= 16 and sum(frame_batches) == n
    assert model.image_batches[-1] == 8
    assert emb.frames["long"].shape == (n, 16) and emb.frame_index["long"].tolist() == list(range(n))
    sub = embed_videos(model, oracle_preprocess, ArraySource(arrays), labels, fps=5.0, batch_size=16, progress=False)
    assert sub.frame_index["long"].tolist() == list(range(0, n, 5))


def test_cli_rejects_a_bad_prompt_file_in_one_line(tmp_path, capsys, monkeypatch):
    from ophclip.cli import main

    bad = tmp_path / "my_prompts.yaml"
    bad.write_text("phase:\n  classes:\n    Incision: []\n")
    monkeypatch.setattr(sys, "argv", ["ophclip", "zeroshot", "--prompts", str(bad), "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "my_prompts.yaml" in err and "empty prompt list" in err


@pytest.mark.slow
def test_cli_zeroshot_on_the_synthetic_set_with_a_random_model(synth_tiny_dir, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score
    from typer.testing import CliRunner

    from ophclip.cli import _register_all, app

    _register_all()
    out = tmp_path / "zs"
    result = CliRunner().invoke(app, ["zeroshot", "configs/eval_synthetic.yaml", f"benchmark.root={synth_tiny_dir}",
                                      "eval.n_boot=50", "--fps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_parquet(out / "predictions.parquet")
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv")
    assert sorted(table.video_id.unique()) == sorted(meta[meta.split == "eval"].video_id)
    for vid, g in table.groupby("video_id"):  # recomputed from the saved per-frame predictions
        assert metrics["phase"]["per_video"][vid]["accuracy"] == pytest.approx(accuracy_score(g.label, g.pred))
        assert metrics["phase"]["per_video"][vid]["f1"] == pytest.approx(f1_score(g.label, g.pred, average="macro"))
    for key in ("tools", "surgery_type", "retrieval"):
        assert key in metrics
    assert (out / "config.yaml").is_file() and json.loads((out / "run.json").read_text())["counts"]["frames"] > 0
    assert "zero-shot" in result.output


@pytest.mark.parametrize("field,value,key", [("tool_scoring", "softmax", "eval.tool_scoring"),
                                             ("smoothing_window", 0, "eval.smoothing_window"),
                                             ("fps", 0.0, "eval.fps"), ("tool_threshold", 2.0, "eval.tool_threshold")])
def test_bad_options_name_the_key(tmp_path, field, value, key):
    from ophclip.errors import ConfigError

    phases, _, source = oracle_benchmark()
    model, tok = oracle_model()
    opts = EvalOptions(**{field: value})
    with pytest.raises(ConfigError, match=key):
        run_zero_shot(model, oracle_preprocess, tok, source, PROMPTS, tmp_path, phases=phases, opts=opts, progress=False)


def test_shipped_prompt_files_resolve_by_name(tmp_path):
    from ophclip.datasets import resolve_prompt_file

    assert resolve_prompt_file("synthetic").name == "synthetic.yaml" and resolve_prompt_file("synthetic").is_file()
    mine = tmp_path / "synthetic.yaml"
    mine.write_text("phase: {}\n")
    assert resolve_prompt_file(mine) == mine  # a user's file wins over the shipped one
