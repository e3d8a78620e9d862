"""Self-supervised pretraining (ophclip.ssl): EMA teacher, centring, views, learning, resume, collapse.

Expected values come from the reference formulas written out here (EMA, DINO centring and
cross-entropy, cosine schedules), from the frames' own content (each frame stores its index),
and from scikit-learn (kNN).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data_pipeline.frame_cache import write_index  # noqa: E402
from data_pipeline.manifests import write_manifest  # noqa: E402
from ophclip.config import load_config  # noqa: E402
from ophclip.errors import ModelError  # noqa: E402
from ophclip.ssl import SSLCollapseError, SSLConfig, SSLLoss, load_vision_init  # noqa: E402
from ophclip.ssl.config import SSLLossSection  # noqa: E402
from ophclip.ssl.monitor import knn_accuracy  # noqa: E402
from ophclip.train.objectives.ssl import SSLTrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MICRO_NAME = "OphCLIP-ssl-test-micro"
# A real open_clip ViT, small enough for CPU tests (a 1-layer, 32-wide tower on 32 px frames).
MICRO_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {
        "type": "open_clip",
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
    },
    "temporal_cfg": {"pool": "mean"},
}
FPS = 4.0


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny models on a shared CPU: extra intra-op threads only spin-wait.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_root(root: Path, frames_of: dict[str, np.ndarray], kinds: dict[str, str] | None = None) -> Path:
    """A dataset root with only what SSL reads: videos.parquet and the frame cache."""
    (root / "frames").mkdir(parents=True, exist_ok=True)
    index, videos = [], []
    for video_id, array in frames_of.items():
        np.save(root / "frames" / f"{video_id}.npy", array)
        t, h, w, _ = array.shape
        index.append(
            {
                "video_id": video_id,
                "file": f"{video_id}.npy",
                "n_frames": t,
                "fps": FPS,
                "height": h,
                "width": w,
                "source_sha256": "",
            }
        )
        kind = (kinds or {}).get(video_id, "silent")
        videos.append(
            {
                "video_id": video_id,
                "path": f"videos/{video_id}.mp4",
                "sha256": "",
                "duration_s": t / FPS,
                "fps": FPS,
                "width": w,
                "height": h,
                "has_audio": kind == "narrated",
                "kind": kind,
                "title": "",
                "description": "",
                "status": "ok",
                "error": "",
            }
        )
    write_index(root / "frames", index)
    write_manifest(root, "videos", pd.DataFrame(videos))
    return root


def structured_video(rng: np.random.Generator, n_frames: int = 40, size: int = 32) -> np.ndarray:
    """A video in its own colour, brighter or darker per phase, with noise: views of one video share
    its colour, views of two videos do not, so there is something to learn in a few steps."""
    colour = rng.integers(40, 216, size=3)
    per = n_frames // 4
    chunks = [
        np.clip(colour + shift + rng.integers(-20, 21, size=(per, size, size, 3)), 0, 255)
        for shift in rng.permutation([-30, -10, 10, 30])
    ]
    return np.concatenate(chunks).astype(np.uint8)


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ssl_model") / f"{MICRO_NAME}.json"
    path.write_text(json.dumps(MICRO_MODEL), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = {f"v{i:02d}": structured_video(rng) for i in range(8)}
    return write_root(tmp_path_factory.mktemp("ssl_root"), frames, {"v00": "narrated", "v01": "narrated"})


def make_cfg(root: Path, micro_config: Path, out: Path, *extra: str) -> SSLConfig:
    overrides = [
        f"data.root={root}",
        f"model.name={MICRO_NAME}",
        f"model.config_file={micro_config}",
        f"train.output_dir={out}",
        "train.batch_size=8",
        "train.steps=6",
        "train.warmup_steps=2",
        "train.save_every=3",
        "head.hidden_dim=64",
        "head.bottleneck_dim=32",
        "head.out_dim=64",
        "data.views.local_views=2",
        "data.views.global_frames=2",
        "data.views.local_frames=1",
        "data.views.global_span_s=[2.0,4.0]",
        "data.views.local_span_s=[0.5,1.0]",
        "log.tensorboard=false",
        "log.every=1",
        "monitor.every=1",
        "train.device=cpu",
        *extra,
    ]
    return load_config(SSLConfig, REPO / "configs" / "ssl_tiny.yaml", overrides)


def test_configs_load_and_validate():
    from ophclip.ssl import validate

    names = sorted(p.name for p in (REPO / "configs").glob("ssl_*.yaml"))
    assert {"ssl_tiny.yaml", "ssl_demo.yaml", "ssl_within_video.yaml"} <= set(names)
    for name in names:
        cfg = load_config(SSLConfig, REPO / "configs" / name, ["data.root=x"])
        validate(cfg)
    # The within-video recipe's point: each batch is the windows of one video, nothing else.
    recipe = load_config(SSLConfig, REPO / "configs" / "ssl_within_video.yaml", ["data.root=x"])
    assert recipe.train.batch_size == recipe.data.clips_per_video and recipe.data.views.window_s
    from ophclip.errors import ConfigError

    with pytest.raises(ConfigError, match="data.views.local_span_s"):
        validate(
            load_config(
                SSLConfig,
                REPO / "configs" / "ssl_tiny.yaml",
                ["data.root=x", "data.views.local_span_s=[2.0,1.0]"],
            )
        )


def test_views_have_configured_shapes_spans_and_frames(tmp_path, micro_config):
    # Each frame stores its own index in every pixel, so the sampled frames can be read back.
    n = 64
    ramp = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 32, 32, 3)).copy()
    root = write_root(tmp_path / "root", {"ramp": ramp})
    cfg = make_cfg(
        root,
        micro_config,
        tmp_path / "out",
        "train.batch_size=1",
        "data.views.local_views=3",
        "data.views.global_frames=4",
        "data.views.local_frames=2",
    )
    views = SSLTrainer(cfg).views
    duration = n / FPS
    for seed in range(8):
        item = views[(0, seed)]
        assert len(item["global"]) == 2 and len(item["local"]) == 3
        assert all(tuple(v.shape) == (4, 3, 32, 32) for v in item["global"])
        assert all(tuple(v.shape) == (2, 3, 32, 32) for v in item["local"])
        for k, spec in enumerate(item["specs"]):
            lo, hi = (2.0, 4.0) if k < 2 else (0.5, 1.0)
            assert lo - 1e-9 <= spec.span <= hi + 1e-9
            assert 0.0 <= spec.start and spec.start + spec.span <= duration + 1e-9
            # Frames spread evenly: frame j shows time start + (j + 0.5) * span / n.
            expected = [
                math.floor((spec.start + (j + 0.5) * spec.span / spec.n) * FPS) for j in range(spec.n)
            ]
            got = views._frames("ramp", spec)[:, 0, 0, 0].astype(int).tolist()
            assert got == expected
    # Same key -> same views (a pure function of the sample key); another key -> different views.
    a, b, c = views[(0, 7)], views[(0, 7)], views[(0, 8)]
    assert torch.equal(a["global"][0], b["global"][0]) and a["specs"] == b["specs"]
    assert a["specs"] != c["specs"]


def test_windowed_views_share_one_window_and_video_runs_fill_batches(tmp_path, micro_config):
    n = 200  # 50 s at 4 fps: a 5 s window is a tenth of the video
    ramp = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, 32, 32, 3)).copy()
    root = write_root(tmp_path / "root", {f"r{i}": ramp for i in range(4)})
    cfg = make_cfg(
        root,
        micro_config,
        tmp_path / "out",
        "data.views.window_s=5.0",
        "data.views.global_span_s=[2.0,4.0]",
        "data.clips_per_video=4",
        "train.batch_size=8",
    )
    trainer = SSLTrainer(cfg)
    views = trainer.views
    assert len(views) == 16
    starts = []
    for seed in range(20):
        specs = views[(0, seed)]["specs"]
        first = min(s.start for s in specs)
        last = max(s.start + s.span for s in specs)
        assert last - first <= 5.0 + 1e-9, f"seed {seed}: views span {last - first:.2f} s > window 5 s"
        assert 0.0 <= first and last <= n / FPS + 1e-9
        starts.append(first)
    # The window moves through the video (not pinned to its start).
    assert max(starts) - min(starts) > 20.0
    # Batches hold runs of four samples of one video, each with its own window.
    for step in range(6):
        batch = trainer.batch(step)
        ids = batch["video_id"]
        runs = [ids[i : i + 4] for i in range(0, len(ids), 4)]
        assert all(len(set(r)) == 1 for r in runs), ids
        starts_in_run = {round(min(s.start for s in specs), 6) for specs in batch["specs"][:4]}
        assert len(starts_in_run) == 4
    from ophclip.errors import ConfigError
    from ophclip.ssl import validate

    with pytest.raises(ConfigError, match="data.views.window_s"):
        validate(make_cfg(root, micro_config, tmp_path / "x", "data.views.window_s=0"))
    with pytest.raises(ConfigError, match="data.clips_per_video"):
        validate(make_cfg(root, micro_config, tmp_path / "x", "data.clips_per_video=0"))


def test_progress_pretext_targets_and_gradient(root, micro_config, tmp_path):
    on = SSLTrainer(make_cfg(root, micro_config, tmp_path / "on", "loss.progress_weight=1.0"))
    off = SSLTrainer(make_cfg(root, micro_config, tmp_path / "off"))
    assert off.student.progress is None
    batch = on.batch(0)
    g = len(batch["global"])
    for b, (video_id, specs) in enumerate(zip(batch["video_id"], batch["specs"], strict=True)):
        duration = on.views.duration(video_id)
        for i, spec in enumerate(specs[:g]):
            assert float(batch["progress"][b, i]) == pytest.approx((spec.start + spec.span / 2) / duration, abs=1e-6)
    # The term is the binary cross-entropy of the head's prediction, computed here by hand.
    outs = [on.student(v) for v in batch["global"]]
    p = torch.sigmoid(torch.stack([on.student.progress(o[0]).squeeze(-1) for o in outs], dim=1))
    t = batch["progress"]
    by_hand = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    torch.testing.assert_close(on.progress_loss(outs, t), by_hand, rtol=1e-5, atol=1e-6)
    # Same init and batch: the pretext changes the tower's update, and the teacher gets no gradient.
    before = off.student.backbone.state_dict()
    for key, value in on.student.backbone.state_dict().items():
        assert torch.equal(value, before[key])
    metrics = on.train_step(batch)
    metrics_off = off.train_step(off.batch(0))
    assert math.isfinite(metrics["loss/progress"]) and "loss/progress" not in metrics_off
    changed = [
        k
        for k, v in on.student.backbone.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, off.student.backbone.state_dict()[k])
    ]
    assert changed
    assert all(p.grad is None for p in on.teacher.parameters())
    from ophclip.errors import ConfigError
    from ophclip.ssl import validate

    with pytest.raises(ConfigError, match="loss.progress_weight"):
        validate(make_cfg(root, micro_config, tmp_path / "x", "loss.progress_weight=-1"))


def test_centering_and_dino_loss_follow_the_formulas():
    torch.manual_seed(0)
    cfg = SSLLossSection(student_temp=0.1, teacher_temp=0.04, center_momentum=0.9)
    loss = SSLLoss(cfg, out_dim=5)
    c0 = torch.randn(1, 5)
    loss.center.copy_(c0)
    teacher = [torch.randn(4, 5) for _ in range(2)]
    student = [torch.randn(4, 5) for _ in range(3)]
    value = loss({"logits": student, "z": None}, {"logits": teacher, "z": None}, teacher_temp=0.04)

    # Reference in numpy: softmax((t - c0)/tt) targets; CE against log_softmax(s/ts), pairs i != j.
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    c = c0.numpy().astype(np.float64)
    terms = []
    for i, t in enumerate(teacher):
        q = softmax((t.numpy() - c) / 0.04)
        for j, s in enumerate(student):
            if i != j:
                terms.append(np.mean(np.sum(-q * np.log(softmax(s.numpy() / 0.1)), axis=1)))
    assert value.item() == pytest.approx(np.mean(terms), rel=1e-5)
    expected_center = 0.9 * c + 0.1 * np.concatenate([t.numpy() for t in teacher]).mean(0, keepdims=True)
    np.testing.assert_allclose(loss.center.numpy(), expected_center, rtol=1e-5, atol=1e-6)


def test_teacher_moves_only_by_ema(root, micro_config, tmp_path):
    cfg = make_cfg(root, micro_config, tmp_path / "out")
    trainer = SSLTrainer(cfg)
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    for step in range(2):
        before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
        trainer.train_step(trainer.batch(step))
        assert all(p.grad is None for p in trainer.teacher.parameters())
        # Momentum by DINO's cosine schedule 1 - (1 - m0) (cos(pi s / T) + 1) / 2, computed here.
        m = 1 - (1 - 0.996) * (math.cos(math.pi * step / cfg.train.steps) + 1) / 2
        student = trainer.student.state_dict()
        for key, value in trainer.teacher.state_dict().items():
            torch.testing.assert_close(value, m * before[key] + (1 - m) * student[key], rtol=0, atol=1e-6)
        # And the teacher differs from the student (it is not a copy).
        assert not torch.equal(trainer.teacher.head.mlp[0].weight, trainer.student.head.mlp[0].weight)


@pytest.mark.parametrize("method", ["infonce", "dino"])
def test_tiny_run_loss_falls(root, micro_config, tmp_path, method):
    from ophclip.train.logs import read_log

    cfg = make_cfg(
        root,
        micro_config,
        tmp_path / method,
        f"loss.method={method}",
        "train.steps=40",
        "train.lr=1e-3",
        "train.teacher_momentum=0.99",
        "train.save_every=40",
        "monitor.every=10",
    )
    summary = SSLTrainer(cfg).fit()
    records = read_log(tmp_path / method / "log.jsonl")
    # InfoNCE: the loss itself, from chance level log(batch). DINO: the cross-entropy is
    # H(teacher) + KL(teacher || student) and the teacher's entropy moves with centring, so the
    # KL part (what the student controls) is the one that must fall.
    key = "loss" if method == "infonce" else "loss/kl"
    values = [r[key] for r in records]
    first, last = np.mean(values[:5]), np.mean(values[-5:])
    assert last < 0.75 * first, f"{method}: {key} {first:.3f} -> {last:.3f}"
    if method == "infonce":
        assert last < math.log(cfg.train.batch_size) - 0.5  # well below chance
    assert summary["steps"] == 40 and not summary["collapse_warned"]


def _read_losses(out: Path) -> list[float]:
    from ophclip.train.logs import read_log

    return [r["loss"] for r in read_log(out / "log.jsonl")]


def test_resume_is_exact(root, micro_config, tmp_path):
    full = SSLTrainer(make_cfg(root, micro_config, tmp_path / "full"))
    full.fit()
    first = SSLTrainer(make_cfg(root, micro_config, tmp_path / "split", "train.save_every=100"))
    first.fit(stop_at=3)  # as if killed after step 3: same schedules, checkpoint at the stop
    # The second half is a new process in spirit: new objects, and a scrambled global RNG.
    torch.manual_seed(1234)
    np.random.seed(99)
    second = SSLTrainer(make_cfg(root, micro_config, tmp_path / "split"), resume="latest")
    assert second.step == 3
    second.fit()
    for part in ("student", "teacher"):
        a, b = getattr(full, part).state_dict(), getattr(second, part).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{part}.{key}")
    torch.testing.assert_close(full.loss.center, second.loss.center, rtol=0, atol=0)
    assert _read_losses(tmp_path / "full") == _read_losses(tmp_path / "split")  # bitwise, as logged


def test_constant_input_collapse_is_reported(tmp_path, micro_config, caplog):
    # Black frames: crops, flips and colour jitter all leave them black, so every clip is identical.
    frames = {f"c{i}": np.zeros((40, 32, 32, 3), np.uint8) for i in range(8)}
    root = write_root(tmp_path / "root", frames)
    cfg = make_cfg(root, micro_config, tmp_path / "err", "monitor.on_collapse=error", "monitor.patience=2")
    with pytest.raises(SSLCollapseError, match=r"collapse at step 2.*monitor.min_feature_std_ratio"):
        SSLTrainer(cfg).fit()
    cfg = make_cfg(root, micro_config, tmp_path / "warn", "monitor.on_collapse=warn", "monitor.patience=2")
    with caplog.at_level(logging.WARNING, logger="ophclip.train.objectives.ssl"):
        summary = SSLTrainer(cfg).fit()
    assert summary["collapse_warned"]
    # The other DINO failure, a uniform teacher (centring beats sharpening), is named as such.
    trainer = SSLTrainer(
        make_cfg(root, micro_config, tmp_path / "u", "monitor.on_collapse=error", "monitor.patience=1")
    )
    uniform = {
        "monitor/feature_std_ratio": 0.5,
        "monitor/head_std_ratio": 0.5,
        "monitor/teacher_entropy_ratio": 0.999,
    }
    with pytest.raises(SSLCollapseError, match=r"entropy is 0.9990 of its maximum.*max_entropy_ratio"):
        trainer.objective.check_collapse(dict(uniform), step=1)
    trainer.objective.check_collapse({**uniform, "monitor/teacher_entropy_ratio": 0.9}, step=2)  # healthy: no error
    assert sum("representation collapse" in r.getMessage() for r in caplog.records) == 1  # said once, clearly


def test_healthy_run_is_not_flagged(root, micro_config, tmp_path):
    cfg = make_cfg(root, micro_config, tmp_path / "ok", "monitor.on_collapse=error", "monitor.patience=1")
    summary = SSLTrainer(cfg).fit()
    assert summary["last_monitor"]["monitor/feature_std_ratio"] > 0.05


def test_vision_init_loads_into_an_ophclip_model(root, micro_config, tmp_path):
    import ophclip

    trainer = SSLTrainer(make_cfg(root, micro_config, tmp_path / "out", "train.steps=2"))
    summary = trainer.fit()
    model = ophclip.create_model(MICRO_NAME)
    assert not torch.equal(model.visual.conv1.weight, trainer.teacher.backbone.conv1.weight)
    load_vision_init(model, summary["vision_dir"])
    for key, value in trainer.teacher.backbone.state_dict().items():
        assert torch.equal(model.visual.state_dict()[key], value), key
    # A save_pretrained folder works too, and a tower of another shape is refused with the keys named.
    model.save_pretrained(tmp_path / "saved")
    other = ophclip.create_model(MICRO_NAME)
    load_vision_init(other, tmp_path / "saved")
    assert torch.equal(other.visual.conv1.weight, model.visual.conv1.weight)
    wrong = ophclip.create_model("OphCLIP-student-ViT-Micro")
    with pytest.raises(ModelError, match="do not fit"):
        load_vision_init(wrong, summary["vision_dir"])


def test_auxiliary_loss_trains_tower_and_head_not_teacher(root, micro_config, tmp_path):
    import ophclip
    from ophclip.ssl import AuxiliarySSLLoss

    trainer = SSLTrainer(make_cfg(root, micro_config, tmp_path / "out"))
    model = ophclip.create_model(MICRO_NAME)
    aux = AuxiliarySSLLoss(model.visual, model.embed_dim, total_steps=10)
    loss = aux(model.visual, trainer.batch(0), step=0)
    loss.backward()
    assert model.visual.conv1.weight.grad is not None and aux.head.mlp[0].weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in aux.teacher.parameters())
    names = {n for n, _ in aux.named_parameters()}
    assert names and all(n.startswith("head.") for n in names)  # only the head joins the optimizer


def test_knn_accuracy_matches_sklearn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(60, 8)), rng.normal(size=(30, 8))
    train_y = rng.integers(0, 3, 60).astype(str)
    test_y = rng.integers(0, 3, 30).astype(str)
    ref = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(train_x, train_y).score(test_x, test_y)
    ours = knn_accuracy(torch.tensor(train_x), train_y, torch.tensor(test_x), test_y, k=5)
    assert ours == pytest.approx(ref)


def test_knn_probe_is_logged(root, micro_config, tmp_path):
    rows = [
        {"video_id": f"v{i:02d}", "time_s": t, "label": int(t // 2.5)}
        for i in range(8)
        for t in np.arange(0, 10, 1.0)
    ]
    labels = tmp_path / "probe.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    cfg = make_cfg(
        root,
        micro_config,
        tmp_path / "out",
        f"monitor.probe_labels={labels}",
        "monitor.probe_every=3",
        "train.steps=3",
    )
    summary = SSLTrainer(cfg).fit()
    assert 0.0 <= summary["last_monitor"]["monitor/knn_acc"] <= 1.0


def test_cli_runs_and_resumes(root, micro_config, tmp_path):
    import typer
    from typer.testing import CliRunner

    from ophclip.cli import ssl as ssl_cli

    app = typer.Typer()
    ssl_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `ssl` a subcommand, as in `ophclip`
    args = [
        "ssl",
        str(REPO / "configs" / "ssl_tiny.yaml"),
        f"data.root={root}",
        f"model.name={MICRO_NAME}",
        f"model.config_file={micro_config}",
        f"train.output_dir={tmp_path / 'cli'}",
        "train.steps=2",
        "train.batch_size=8",
        "head.out_dim=64",
        "data.views.local_views=1",
        "log.tensorboard=false",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "vision" / "vision.safetensors").is_file()
    assert (tmp_path / "cli" / "checkpoints" / "latest.pt").is_file()
    result = CliRunner().invoke(app, [*args[:-1], "train.steps=3", "--resume", "latest", "--no-progress"])
    assert result.exit_code == 0, result.output
    # Bad input: a ConfigError naming the key (the `ophclip` entry point prints it as one line).
    from ophclip.errors import ConfigError

    bad = CliRunner().invoke(app, ["ssl", str(REPO / "configs" / "ssl_tiny.yaml"), "data.root="])
    assert isinstance(bad.exception, ConfigError) and "data.root" in str(bad.exception)


def test_held_out_splits_and_missing_cache_entries_are_left_out(tmp_path):
    from data_pipeline.manifests import read_manifest
    from ophclip.errors import DataError
    from ophclip.ssl import ssl_video_ids

    rng = np.random.default_rng(1)
    root = write_root(
        tmp_path / "root", {f"v{i}": structured_video(rng) for i in range(4)}, {"v0": "narrated"}
    )
    videos = read_manifest(root, "videos")
    videos["split"] = ["narrated_pretrain", "silent_pretrain", "eval", "silent_pretrain"]
    extra = videos.iloc[[1]].assign(video_id="not_cached")  # listed, but the frames stage never cached it
    write_manifest(root, "videos", pd.concat([videos, extra], ignore_index=True))
    assert read_manifest(root, "videos").columns.str.contains("split").any()
    assert ssl_video_ids(root, ["silent", "narrated"]) == ["v0", "v1", "v3"]
    assert ssl_video_ids(root, ["silent"], exclude_splits=[]) == ["v1", "v2", "v3"]
    with pytest.raises(DataError, match="data.kinds"):
        ssl_video_ids(root, ["narrated"], exclude_splits=["narrated_pretrain"])
