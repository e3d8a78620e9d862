"""The training-step, data-loading and pipeline benchmarks run end to end at their smallest sizes.

Each runs its ``main`` on the session's tiny synthetic dataset (tests/conftest.py) and checks that
the JSON report holds the expected keys with positive, finite numbers. Timings themselves are
not asserted: this machine is shared and noisy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _machine_ok(machine: dict) -> None:
    assert machine["cpus"] >= 1 and machine["cpu_model"]
    assert machine["torch"] and machine["torch_threads"] >= 1
    assert len(machine["load_average_at_start"]) == 3 and len(machine["load_average_at_end"]) == 3


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_perf_train_step_smallest(tmp_path, synth_tiny_root, one_thread, capsys):
    from benchmarks.perf_train_step import main

    out = tmp_path / "train_step.json"
    report = main([
        "--root", str(synth_tiny_root), "--models", "OphCLIP-tiny-MiniLM", "--retrieval-modes", "feature_aug",
        "--clip-batch", "4", "--clip-frames", "2", "--video-batch", "2", "--video-frames", "2", "--k", "1",
        "--reps", "1", "--peak-n", "256", "--profile-steps", "1", "--profile-top", "5", "--out", str(out),
    ])
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))
    _machine_ok(saved["machine"])
    assert _positive(saved["matmul_peak"]["gflops"])
    assert _positive(saved["matmul_peak_interleaved"]["OphCLIP-tiny-MiniLM"]["gflops"])
    variants = {r["variant"] for r in saved["rows"]}
    assert {"ophclip clip", "plain clip", "plain clip (cached text)", "ophclip video +feature_aug",
            "plain video"} <= variants
    for row in saved["rows"]:
        for key in ("step_ms", "clips_per_s", "gflop_per_step", "gflop_per_s", "mfu_pct"):
            assert _positive(row[key]), (row["variant"], key, row[key])
    assert "search_ms" not in next(r for r in saved["rows"] if r["variant"] == "ophclip clip")
    video = next(r for r in saved["rows"] if r["variant"] == "ophclip video +feature_aug")
    assert _positive(video["search_ms"]) and _positive(video["bank_full_refresh_s"])
    assert 0 <= video["retrieval_share_pct"] < 100
    assert all(_positive(v) for v in saved["ratios"].values()) and len(saved["ratios"]) == 3
    prof = saved["profile"]
    assert len(prof["torch_top_self_cpu"]) == 5 and all(_positive(e["self_cpu_ms"]) for e in prof["torch_top_self_cpu"])
    assert any("trainer.py" in e["function"] or "plain" in prof["variant"] for e in prof["python_top_cumulative"])
    assert "| model | variant |" in capsys.readouterr().out


def test_perf_data_smallest(tmp_path, synth_tiny_root, one_thread, capsys):
    from benchmarks.perf_data import main

    out = tmp_path / "data.json"
    main(["--root", str(synth_tiny_root), "--workers", "0,1", "--clip-batch", "4", "--clip-frames", "2",
          "--batches", "1", "--reps", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    _machine_ok(saved["machine"])
    rows = {r["variant"]: r for r in saved["rows"]}
    assert {"frame cache + aug, num_workers=0", "frame cache + aug, num_workers=1",
            "PyAV decode mp4 + resize + aug (1 process)"} <= set(rows)
    assert any(v.startswith("trainer consumption") for v in rows)
    for row in rows.values():
        for key in ("batch_ms", "clips_per_s", "frames_per_s", "x_consumption"):
            assert _positive(row[key]), (row["variant"], key)
    assert saved["frames_per_batch"] == 8
    assert all(_positive(v) for v in saved["ratios"].values())
    assert "frames_per_s" in capsys.readouterr().out


def test_perf_pipeline_asr_smallest(tmp_path, synth_tiny_dir, synth_tiny_root, one_thread):
    from benchmarks.perf_pipeline import main

    out = tmp_path / "pipeline.json"
    main(["--synth", str(synth_tiny_dir), "--root", str(synth_tiny_root), "--audio-s", "4", "--clips", "1",
          "--reps", "1", "--beam-size", "1", "--rewrite-clips", "0", "--out", str(out)])
    saved = json.loads(out.read_text())
    _machine_ok(saved["machine"])
    rows = saved["asr"]["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["backend"] for r in ok} >= {"faster-whisper tiny.en int8 (pipeline: VAD on)",
                                         "faster-whisper tiny.en int8 (VAD off)"}
    for r in ok:
        for key in ("audio_s", "wall_s", "rtf", "audio_s_per_wall_s", "load_s"):
            assert _positive(r[key]), (r["backend"], key)
        # Scored, not judged: a 4 s clip at beam 1 can come out worse than empty (WER > 1) when one
        # rounding flips a token. Transcription quality is tested on whole videos in
        # tests/data_pipeline/test_evaluate_pipeline.py.
        assert math.isfinite(r["wer"]) and r["wer"] >= 0
    # openai-whisper is either measured or reported with a reason, never silently missing.
    assert any("openai-whisper" in r["backend"] for r in rows)
    assert all(r["reason"] for r in rows if r["status"] != "ok")


@pytest.mark.slow
def test_perf_pipeline_rewrite_smallest(tmp_path, synth_tiny_dir, synth_tiny_root, one_thread):
    """Loads the SmolLM2 GGUF (dequantised at load: about a minute on 2 cores)."""
    from benchmarks.perf_pipeline import main

    out = tmp_path / "rewrite.json"
    main(["--synth", str(synth_tiny_dir), "--root", str(synth_tiny_root), "--skip-asr", "--rewrite-clips", "1",
          "--rewrite-reps", "1", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rewrite"]["rows"]
    assert row["narrations"] == 1 and row["x_first"] == 1.0
    for key in ("load_s", "wall_s", "clips_per_s", "s_per_clip", "tokens_out", "tokens_per_s"):
        assert _positive(row[key]), key


def test_the_readme_results_are_rendered_from_the_json_and_replace_only_the_marked_section(tmp_path):
    from benchmarks.results_readme import END, START, render, write_into

    machine = {"cpu_model": "X", "cpus": 2, "torch": "2", "torch_threads": 1, "python": "3",
               "load_average_at_start": [1.0], "load_average_at_end": [2.0]}
    rows = [{"variant": "frame cache", "frames_per_s": 1234.4, "x_consumption": 7.25}]
    (tmp_path / "perf_data.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    body = render(tmp_path)
    assert "| frame cache | 1234 | 7.25 |" in body and "Training step" not in body  # absent JSON: no table
    # The ceiling table averages the runs of each (model, steps); each ssl_probe*/ folder adds a table.
    runs = [{"model": "M", "steps": 10, "phase_accuracy": a, "phase_accuracy_surgery_known": a + 0.1, "train_s": 4.0}
            for a in (0.2, 0.4)]
    (tmp_path / "phase_ceiling").mkdir()
    (tmp_path / "phase_ceiling" / "phase_ceiling.json").write_text(
        json.dumps({"machine": machine, "runs": runs, "protocol": "p"}))
    for folder, model in (("ssl_probe", "A"), ("ssl_probe_cnn", "B")):
        (tmp_path / folder).mkdir()
        rows = {"random init": {"linear_accuracy": 0.5, "linear_f1": 0.25, "knn_accuracy": 0.125, "knn_f1": 0.0625}}
        if model == "B":  # a row over two seeds shows mean ± std
            runs = [{"linear_accuracy": a, "linear_f1": a, "knn_accuracy": a, "knn_f1": a} for a in (0.25, 0.75)]
            rows["seeds"] = {"runs": runs, **{k: 0.5 for k in runs[0]}, **{f"{k}_std": 0.25 for k in runs[0]}}
        (tmp_path / folder / "ssl_probe.json").write_text(json.dumps({"rows": rows, "model_name": model, "protocol": "q"}))
    # The tower probe's rows keep their spread over pretrained towers, and the section names its command.
    cells = {f"{f}/{k}": {"mean": 0.5, "std": 0.125, "values": [0.375, 0.625]} for f in ("embedding", "trunk")
             for k in ("linear_accuracy", "linear_f1", "knn_accuracy")}
    (tmp_path / "tower_probe").mkdir()
    (tmp_path / "tower_probe" / "tower_probe.json").write_text(json.dumps(
        {"rows": {"pretrained": {"towers": ["a", "b"], **cells}}, "image_size": 160, "protocol": "r",
         "command": "python -m benchmarks.tower_probe --synth S"}))
    body = render(tmp_path)
    assert "| pretrained | 2 | " + " | ".join(["0.500 ± 0.125"] * 6) + " |" in body
    assert "`python -m benchmarks.tower_probe --synth S`" in body
    assert "| M | 10 | 2 | 0.300 ± 0.100 | 0.400 ± 0.100 | 4 |" in body
    assert "vision tower (A)" in body and "vision tower (B)" in body and "| random init | 1 | 0.500 | 0.250 | 0.125 | 0.062 |" in body
    assert "| seeds | 2 | 0.500 ± 0.250 | 0.500 ± 0.250 | 0.500 ± 0.250 | 0.500 ± 0.250 |" in body
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold numbers\n{END}\nafter\n")
    write_into(readme, body)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old numbers" not in text and "1234" in text


def test_phase_ceiling_smallest(tmp_path, synth_tiny_dir, synth_tiny_root, one_thread):
    from benchmarks.phase_ceiling import main

    result = main(["--synth", str(synth_tiny_dir), "--root", str(synth_tiny_root), "--steps", "2", "--batch", "4",
                   "--models", "OphCLIP-tiny-MiniLM", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "phase_ceiling.json").read_text())
    _machine_ok(saved["machine"])
    (run,) = saved["runs"]
    assert run == json.loads(json.dumps(result["runs"][0]))
    assert run["train_videos"] > 0 and run["test_videos"] > 0 and run["train_frames"] > run["train_videos"]
    assert 0.0 <= run["phase_accuracy"] <= run["phase_accuracy_surgery_known"] + 1e-9 <= 1.0 + 1e-9
    assert math.isfinite(run["final_loss"]) and "| OphCLIP-tiny-MiniLM | 2 | 1 |" in (tmp_path / "phase_ceiling.md").read_text()


def test_ablation_ssl_row_is_named_after_its_recipe(tmp_path):
    from benchmarks.ablation import VARIANTS, ssl_init_variant

    def vision(name: str, model: str, **ssl) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "vision_config.json").write_text(json.dumps({"model_name": model, "training_info": {"ssl": ssl}}))
        return folder

    dino = vision("dino", "OphCLIP-tiny-RN-MiniLM", method="dino", steps=300)
    infonce = vision("infonce", "OphCLIP-tiny-RN-MiniLM", method="infonce", steps=1200)
    (name_a, over_a), (name_b, over_b) = ssl_init_variant(dino), ssl_init_variant(infonce)
    assert name_a != name_b and "dino 300 steps" in name_a and "infonce 1200 steps" in name_b
    assert over_a[-1] == f"model.init_vision_from={dino}"
    # The CNN tower's SSL row is the first demo's row started from the tower, so the two compare directly.
    demo = VARIANTS["hierarchical, CNN tower + grouped + retrieval soft_positive (the first demo)"]
    assert over_b == [*demo, f"model.init_vision_from={infonce}"]
    imagenet_name, imagenet_over = ssl_init_variant(vision("effnet", "OphCLIP-EffNetLite0-MiniLM", method="dino",
                                                           steps=200))
    assert imagenet_over == [*VARIANTS["ImageNet tower, hierarchical"], f"model.init_vision_from={tmp_path / 'effnet'}"]
    assert imagenet_name.startswith("ImageNet tower, hierarchical, SSL-initialised")
    vit_name, vit_over = ssl_init_variant(vision("vit", "OphCLIP-tiny-MiniLM", method="dino", steps=100))
    assert "model.name=OphCLIP-tiny-MiniLM" in vit_over and vit_over[-1].endswith("/vit")
    from ophclip.errors import ModelError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="vision_config.json not found"):
        ssl_init_variant(tmp_path / "empty")


def test_ssl_probe_tower_folder_is_reused_only_for_the_same_tower(tmp_path):
    from safetensors.torch import load_file

    from benchmarks.ssl_probe import tower_folder

    folder = tower_folder(tmp_path / "t", "OphCLIP-tiny-RN-MiniLM", None, seed=0)
    first = load_file(folder / "model.safetensors")
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert tower_folder(tmp_path / "t", "OphCLIP-tiny-RN-MiniLM", None, seed=0) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # cached
    tower_folder(tmp_path / "t", "OphCLIP-tiny-RN-MiniLM", None, seed=1)  # another tower: rebuilt, not reused
    second = load_file(folder / "model.safetensors")
    assert any(not first[k].equal(second[k]) for k in first if k.startswith("visual."))


def test_ablation_demo_row_is_the_demo_config():
    """The row labelled "(the demo)" must train exactly what `make demo` trains, and the size rows only resize."""
    from benchmarks.ablation import VARIANTS
    from ophclip.config import load_config
    from ophclip.demo import packaged_config
    from ophclip.train import PretrainConfig

    def config(overrides: list[str]) -> PretrainConfig:
        return load_config(PretrainConfig, packaged_config("pretrain_demo.yaml"), ["data.root=/data", *overrides])

    demo = config([])
    assert config(VARIANTS["ImageNet tower, hierarchical + retrieval soft_positive (the demo)"]) == demo
    at_128 = config(VARIANTS["the demo at 128 px"])
    assert at_128.model.image_size == 128 and at_128.train == demo.train and at_128.loss == demo.loss
    scratch = config(VARIANTS["EfficientNet-Lite0 from scratch, hierarchical"])
    assert scratch.model.pretrained is None and not scratch.model.lock_image and scratch.model.image_size == 160


def test_command_line_quotes_arguments_and_drops_the_given_flags():
    from benchmarks._machine import command_line

    assert command_line("benchmarks.ablation", ["--variants", "a b", "--cached-only"], drop=("--cached-only",)) == \
        "python -m benchmarks.ablation --variants 'a b'"
