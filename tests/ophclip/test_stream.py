"""PhaseStreamer: causality, smoothing/hysteresis by hand, frame sources and their errors, ONNX parity."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ophclip
from ophclip.errors import ConfigError, ModelError
from ophclip.stream import (
    PhaseClassifier,
    PhaseSmoother,
    PhaseStreamer,
    StreamConfig,
    StreamError,
    export_vision_onnx,
    iter_video_file,
    onnx_parity,
    open_source,
)

# A tiny registry config with open_clip's own text tower: builds in well under a second.
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"type": "open_clip", "context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    "temporal_cfg": {"pool": "mean"},
}
CLASSES = ["Incision", "Rhexis", "Phaco"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream_cfg")
    (folder / "Test-stream-tiny.json").write_text(json.dumps(TINY))
    ophclip.add_model_config(folder / "Test-stream-tiny.json")
    torch.manual_seed(0)
    model, _, preprocess = ophclip.create_model_and_transforms("Test-stream-tiny")
    return model.eval(), preprocess


@pytest.fixture(scope="module")
def classifier():
    g = torch.Generator().manual_seed(1)
    return PhaseClassifier(CLASSES, F.normalize(torch.randn(32, 3, generator=g), dim=0), logit_scale=20.0)


def random_frames(n: int, seed: int, size=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- smoothing by hand


def test_ema_and_hysteresis_match_hand_computation():
    smoother = PhaseSmoother(alpha=0.5, margin=0.15, frames=2)
    a, b = [0.9, 0.1], [0.1, 0.9]
    inputs = [a, b, b, b, a, a, b]
    # s_t = 0.5 p_t + 0.5 s_{t-1}, worked out on paper:
    expected_smoothed = [[0.9, 0.1], [0.5, 0.5], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45], [0.725, 0.275],
                         [0.4125, 0.5875]]
    # t=1 tie (argmax keeps 0); t=2 phase 1 leads by 0.4 (run 1 of 2); t=3 run 2 -> switch;
    # t=4 phase 0 leads by only 0.1 < 0.15; t=5 leads by 0.45 (run 1); t=6 phase 1 leads again -> stay 1.
    expected_phase = [0, 0, 0, 1, 1, 1, 1]
    got = [smoother.step(np.array(p)) for p in inputs]
    np.testing.assert_allclose([s for s, _ in got], expected_smoothed, atol=1e-12)
    assert [ph for _, ph in got] == expected_phase


def test_without_smoothing_the_phase_is_the_argmax_each_frame():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=30)
    smoother = PhaseSmoother(alpha=1.0, margin=0.0, frames=1)
    assert [smoother.step(p)[1] for p in probs] == probs.argmax(1).tolist()


def test_hysteresis_suppresses_single_frame_flicker():
    flicker = [[0.8, 0.2]] * 3 + [[0.2, 0.8]] + [[0.8, 0.2]] * 3
    plain = PhaseSmoother(alpha=1.0, frames=1)
    held = PhaseSmoother(alpha=1.0, frames=2)
    assert [plain.step(np.array(p))[1] for p in flicker] == [0, 0, 0, 1, 0, 0, 0]
    assert [held.step(np.array(p))[1] for p in flicker] == [0] * 7


def test_bad_stream_settings_are_rejected():
    with pytest.raises(ConfigError, match="ema_alpha"):
        StreamConfig(ema_alpha=0.0).validate()
    with pytest.raises(ConfigError, match="window"):
        StreamConfig(window=0).validate()


# --------------------------------------------------------------------------- causal inference


def test_output_at_t_does_not_depend_on_later_frames(tiny_model, classifier):
    model, preprocess = tiny_model
    cfg = StreamConfig(window=4, ema_alpha=0.6, hysteresis_margin=0.05, hysteresis_frames=2)
    frames = random_frames(16, seed=0)
    t = 9
    changed = frames.copy()
    changed[t + 1 :] = random_frames(16 - t - 1, seed=99)
    first = list(PhaseStreamer(model, preprocess, classifier, cfg).run(frames))
    second = list(PhaseStreamer(model, preprocess, classifier, cfg).run(changed))
    for a, b in zip(first[: t + 1], second[: t + 1], strict=True):
        np.testing.assert_array_equal(a.probs, b.probs)
        np.testing.assert_array_equal(a.smoothed, b.smoothed)
        assert a.phase == b.phase
    assert not np.allclose(first[t + 1].probs, second[t + 1].probs)  # the test can see a change when there is one


def test_window_probabilities_match_brute_force_with_start_padding(tiny_model, classifier):
    model, preprocess = tiny_model
    window = 3
    frames = random_frames(7, seed=3)
    steps = list(PhaseStreamer(model, preprocess, classifier, StreamConfig(window=window, ema_alpha=1.0)).run(frames))
    with torch.no_grad():
        emb = model.encode_image(preprocess(frames)).numpy()  # all frames in one batch
    w = classifier.weights.numpy()
    for t, step in enumerate(steps):
        idx = [max(i, 0) for i in range(t - window + 1, t + 1)]  # frames before 0 repeat frame 0
        clip = emb[idx].mean(0)
        clip /= np.linalg.norm(clip)
        logits = classifier.logit_scale * clip @ w
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(step.probs, expected, atol=1e-5)
        assert step.phase == int(np.argmax(expected))
        assert step.phase_name == CLASSES[step.phase]


def test_latency_stats_cover_every_frame(tiny_model, classifier):
    model, preprocess = tiny_model
    streamer = PhaseStreamer(model, preprocess, classifier)
    n = len(list(streamer.run(random_frames(12, seed=4))))
    stats = streamer.latency_stats()
    assert n == stats["frames"] == 12
    assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["model_fps"] > 0 and stats["wall_fps"] > 0


# --------------------------------------------------------------------------- bad input


def test_frames_that_change_size_midway_are_an_error(tiny_model, classifier):
    model, preprocess = tiny_model
    frames = list(random_frames(3, seed=5)) + list(random_frames(2, seed=6, size=(64, 64)))
    streamer = PhaseStreamer(model, preprocess, classifier)
    got = []
    with pytest.raises(StreamError, match=r"frame 3 is 64x64 px but the stream started at 48x40"):
        for step in streamer.run(frames):
            got.append(step)
    assert len(got) == 3


def write_video(path, n_frames: int, faststart: bool = True):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(n_frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def test_video_file_streams_every_frame(tmp_path, tiny_model, classifier):
    model, preprocess = tiny_model
    path = write_video(tmp_path / "ok.mp4", 20)
    with av.open(str(path)) as c:  # independent count: PyAV's demuxer
        expected = sum(1 for _ in c.decode(video=0))
    steps = list(PhaseStreamer(model, preprocess, classifier).run(path))
    assert len(steps) == expected == 20


def test_video_that_ends_early_is_an_error_after_its_readable_frames(tmp_path):
    path = write_video(tmp_path / "full.mp4", 40)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # header (faststart) intact, half of the frames gone
    got = 0
    with pytest.raises(StreamError, match=r"cut\.mp4: the video ended early.*40"):
        for _ in iter_video_file(cut):
            got += 1
    assert 0 < got < 40


def test_video_that_cannot_be_opened_is_an_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 20)
    with pytest.raises(StreamError, match=r"bad\.mp4: not a readable video container"):
        list(iter_video_file(bad))
    with pytest.raises(StreamError, match="not found"):
        list(iter_video_file(tmp_path / "missing.mp4"))


def test_missing_camera_is_a_clear_error():
    with pytest.raises(StreamError, match="camera 57"):
        next(open_source("camera:57"))


# --------------------------------------------------------------------------- classifier and ONNX


def test_classifier_from_prompts_saves_and_loads(tmp_path, tiny_model):
    model, _ = tiny_model
    prompts = tmp_path / "p.yaml"
    prompts.write_text("templates: ['a video of {}.']\nphase:\n  classes:\n    Incision: [a corneal cut]\n"
                       "    Rhexis: [a round capsule tear, capsulorhexis]\n")
    tokenizer = ophclip.get_tokenizer("Test-stream-tiny")
    clf = PhaseClassifier.from_prompts(model, tokenizer, prompts)
    with torch.no_grad():  # open_clip's recipe by hand: normalise, average per class, normalise
        expected = []
        for texts in (["a video of a corneal cut."], ["a video of a round capsule tear.", "a video of capsulorhexis."]):
            e = F.normalize(model.encode_text(tokenizer(texts)), dim=-1).mean(0)
            expected.append(e / e.norm())
    torch.testing.assert_close(clf.weights, torch.stack(expected, dim=1), atol=1e-5, rtol=0)
    loaded = PhaseClassifier.load(clf.save(tmp_path / "clf.safetensors"))
    assert loaded.class_names == ["Incision", "Rhexis"]
    assert loaded.logit_scale == pytest.approx(float(model.get_logit_scale().detach()))
    torch.testing.assert_close(loaded.weights, clf.weights)


def test_classifier_of_another_embedding_size_is_rejected(tiny_model):
    model, preprocess = tiny_model
    wrong = PhaseClassifier(CLASSES, torch.randn(16, 3), 10.0, source="other.safetensors")
    with pytest.raises(ModelError, match="16-d class embeddings but the model embeds into 32"):
        PhaseStreamer(model, preprocess, wrong)


def test_onnx_export_matches_pytorch_and_streams_the_same_phases(tmp_path, tiny_model, classifier):
    model, preprocess = tiny_model
    path = export_vision_onnx(model, tmp_path / "vision.onnx")
    pixels = preprocess(random_frames(5, seed=7))
    assert onnx_parity(model, path, pixels) < 1e-4
    frames = random_frames(10, seed=8)
    torch_steps = list(PhaseStreamer(model, preprocess, classifier).run(frames))
    onnx_steps = list(PhaseStreamer(model, preprocess, classifier, StreamConfig(onnx=str(path))).run(frames))
    np.testing.assert_allclose([s.probs for s in onnx_steps], [s.probs for s in torch_steps], atol=1e-4)
    assert [s.phase for s in onnx_steps] == [s.phase for s in torch_steps]


# --------------------------------------------------------------------------- the command line


def test_stream_command_writes_one_prediction_per_frame(tmp_path, tiny_model):
    import pandas as pd
    from typer.testing import CliRunner

    from ophclip.cli import _register_all, app

    _register_all()
    model, _ = tiny_model
    folder = model.save_pretrained(tmp_path / "model")
    video = write_video(tmp_path / "v.mp4", 12)
    prompts = tmp_path / "p.yaml"
    prompts.write_text("phase:\n  classes:\n    Incision: [a corneal cut]\n    Rhexis: [capsulorhexis]\n")
    runner = CliRunner()
    result = runner.invoke(app, ["stream", str(folder), str(video), "--prompts", str(prompts), "--out",
                                 str(tmp_path / "out"), "--save-classifier", str(tmp_path / "clf.safetensors"),
                                 "--window", "3", "--hold", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert table["frame_index"].tolist() == list(range(12))
    assert set(table["phase_name"]) <= {"Incision", "Rhexis"}
    stats = json.loads((tmp_path / "out" / "stream.json").read_text())["latency"]
    assert stats["frames"] == 12 and stats["p99_ms"] >= stats["p50_ms"] > 0
    # The saved classifier replaces the prompts (no text tower needed) and gives the same phases.
    again = runner.invoke(app, ["stream", str(folder), str(video), "--classifier", str(tmp_path / "clf.safetensors"),
                                "--out", str(tmp_path / "out2"), "--window", "3", "--hold", "2"])
    assert again.exit_code == 0, again.output
    assert pd.read_parquet(tmp_path / "out2" / "predictions.parquet")["phase"].tolist() == table["phase"].tolist()


def test_stream_command_needs_prompts_or_a_classifier(tmp_path):
    from typer.testing import CliRunner

    from ophclip.cli import _register_all, app

    _register_all()
    result = CliRunner().invoke(app, ["stream", "OphCLIP-tiny-MiniLM", str(tmp_path / "x.mp4")])
    assert isinstance(result.exception, ConfigError)  # ophclip.cli.main prints it as one line, exit code 2
    assert "give --prompts P.yaml or --classifier FILE" in str(result.exception)
