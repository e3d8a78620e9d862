"""The pipeline on the shared tiny synthetic set, scored against the generator's script."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_pipeline.config import PipelineConfig
from data_pipeline.evaluate_pipeline import evaluate, main
from data_pipeline.manifests import read_manifest
from ophclip.config import load_config

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def demo_pipeline(synth_tiny_dir, tmp_path_factory):
    """The `ophclip demo` pipeline stage on the tiny synthetic set: (its markdown, the root it wrote)."""
    from ophclip.demo import DemoContext, pipeline_stage

    ctx = DemoContext(tmp_path_factory.mktemp("demo"))
    ctx.synth_dir.symlink_to(synth_tiny_dir, target_is_directory=True)
    markdown = pipeline_stage(ctx)
    return markdown, ctx.out_dir / "pipeline_root"


@pytest.fixture(scope="module")
def synth_pipeline_root(demo_pipeline):
    return demo_pipeline[1]


@pytest.mark.slow
def test_demo_stage_reports_the_metrics(demo_pipeline):
    markdown, root = demo_pipeline
    counts = json.loads((root / "run.json").read_text())["counts"]
    assert "| narrated/silent accuracy | **1.000** |" in markdown
    assert f"{counts['clips']} clips" in markdown and counts["videos_quarantined"] == 0


def test_shipped_yaml_prompt_is_the_constant():
    from data_pipeline.config import OPHTHALMIC_ASR_PROMPT

    for name in ("pipeline_fast.yaml", "pipeline_demo.yaml"):
        cfg = load_config(PipelineConfig, REPO / "configs" / name)
        assert cfg.asr.initial_prompt == OPHTHALMIC_ASR_PROMPT


@pytest.mark.slow
def test_metrics_on_the_tiny_synthetic_set(synth_tiny_dir, synth_pipeline_root, tmp_path):
    m = main(["--synth", str(synth_tiny_dir), "--root", str(synth_pipeline_root), "--json", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text())["videos"] == m["videos"]
    # The demo stage transcribes a subset (its video list sits beside the root): narrated and silent videos.
    listed = pd.read_csv(synth_pipeline_root.parent / "pipeline_videos.csv")
    assert set(listed["kind"]) == {"narrated", "silent"}
    assert m["videos"] == len(listed)
    assert m["narrated_silent_accuracy"] == 1.0, m["misclassified"]  # required: 100 % on the demo set
    assert m["wer_after"] <= m["wer_before"]  # lexicon correction must not hurt
    assert m["wer_all_after"] < 0.6
    assert m["start_mae_median_s"] < 1.0
    assert m["asr_audio_s_per_wall_s"] > 0


@pytest.mark.slow
def test_silent_pool_and_frames_match_the_generator(synth_tiny_dir, synth_pipeline_root):
    listed = pd.read_csv(synth_pipeline_root.parent / "pipeline_videos.csv", dtype={"video_id": str})["video_id"]
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv", dtype={"video_id": str}).set_index("video_id")
    meta = meta.loc[listed]  # the videos the demo stage gave the pipeline
    videos = read_manifest(synth_pipeline_root, "videos").set_index("video_id")
    assert sorted(videos.index) == sorted(listed)
    silent = sorted(videos.index[videos["kind"] == "silent"])
    assert silent == sorted(meta.index[meta["kind"] == "silent"])
    # probe against metadata.csv (written by the generator)
    for vid, row in meta.iterrows():
        assert videos.loc[vid, "fps"] == pytest.approx(row["fps"])
        assert (videos.loc[vid, "width"], videos.loc[vid, "height"]) == (row["width"], row["height"])
        assert videos.loc[vid, "duration_s"] == pytest.approx(row["duration_s"], abs=0.15)


def test_evaluate_counts_are_from_the_script(tmp_path):
    """evaluate() on a hand-made root: every metric checked against values computed by hand."""
    synth = tmp_path / "synth"
    root = tmp_path / "root"
    synth.mkdir()
    root.mkdir()
    pd.DataFrame({"video_id": ["v1", "v2"], "kind": ["narrated", "silent"]}).to_csv(synth / "metadata.csv", index=False)
    pd.DataFrame({"video_id": ["v1", "v1", "v1"], "start": [0.0, 3.0, 6.0], "end": [2.0, 5.0, 8.0],
                  "text": ["the corneal incision", "thank you", "the lens goes in"], "phase_id": [1, 1, 2],
                  "is_chatter": [False, True, False]}).to_parquet(synth / "script.parquet")
    from data_pipeline.manifests import write_manifest

    write_manifest(root, "videos", pd.DataFrame({
        "video_id": ["v1", "v2"], "path": ["a", "b"], "sha256": ["x", "y"], "duration_s": [9.0, 9.0], "fps": [8.0, 8.0],
        "width": [8, 8], "height": [8, 8], "has_audio": [True, False], "kind": ["narrated", "narrated"],
        "title": ["", ""], "description": ["", ""], "status": ["ok", "ok"], "error": ["", ""]}))
    pd.DataFrame({"video_id": ["v1"] * 3, "start": [0.5, 3.2, 6.0], "end": [2.0, 5.0, 7.5],
                  "raw_text": ["the corny el incision", "thank you", "the lens goes on"],
                  "text": ["the corneal incision", "thank you", "the lens goes on"],
                  "status": ["kept", "dropped:irrelevant", "kept"]}).to_parquet(root / "sentences.parquet")
    m = evaluate(synth, root)
    assert m["narrated_silent_accuracy"] == 0.5 and m["misclassified"] == ["v2"]
    # kept text vs non-chatter script: ref 7 words; before: "corny el" (1 sub + 1 ins) + "on" (1 sub) = 3/7
    assert m["wer_before"] == pytest.approx(3 / 7)
    assert m["wer_after"] == pytest.approx(1 / 7)
    assert m["start_mae_median_s"] == pytest.approx(0.2)  # errors 0.5, 0.2, 0.0
    assert m["chatter_precision"] == 1.0 and m["chatter_recall"] == 1.0
