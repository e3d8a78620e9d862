"""`ophclip bank build` / `ophclip bank query` on a saved micro model and a real frame cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import ophclip  # noqa: E402
from data_pipeline.frame_cache import write_index  # noqa: E402
from data_pipeline.manifests import write_manifest  # noqa: E402
from ophclip.cli import _register_all, app  # noqa: E402
from retrieval import MemoryBank  # noqa: E402

_register_all()
runner = CliRunner()

MICRO = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
    "text_cfg": {
        "type": "open_clip",
        "context_length": 8,
        "vocab_size": 49408,
        "width": 16,
        "heads": 2,
        "layers": 1,
    },
    "temporal_cfg": {"pool": "mean"},
    "text_frozen": False,
    "logit_scale_learnable": True,
    "init_temperature": 0.07,
}
N_FRAMES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_bank")
    cfg = tmp / "OphCLIP-test-cli-bank.json"
    cfg.write_text(json.dumps(MICRO), encoding="utf-8")
    ophclip.add_model_config(cfg)
    torch.manual_seed(0)
    model, _, _ = ophclip.create_model_and_transforms("OphCLIP-test-cli-bank")
    model.save_pretrained(tmp / "ckpt")
    root = tmp / "dataset"
    rng = np.random.default_rng(0)
    rows, videos = [], []
    for i in range(9):
        vid = f"v{i}"
        kind = "silent" if i < 7 else "narrated"
        arr = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
        (root / "frames").mkdir(parents=True, exist_ok=True)
        np.save(root / "frames" / f"{vid}.npy", arr)
        rows.append(
            {
                "video_id": vid,
                "file": f"{vid}.npy",
                "n_frames": 10,
                "fps": 4.0,
                "height": 16,
                "width": 16,
                "source_sha256": "",
            }
        )
        videos.append(
            {
                "video_id": vid,
                "path": f"videos/{vid}.mp4",
                "sha256": "",
                "duration_s": 2.5,
                "fps": 4.0,
                "width": 16,
                "height": 16,
                "has_audio": kind == "narrated",
                "kind": kind,
                "title": "",
                "description": "",
                "status": "ok",
                "error": "",
            }
        )
    write_index(root / "frames", rows)
    write_manifest(root, "videos", pd.DataFrame(videos))
    return tmp, root


def reference_embeddings(ckpt: Path, root: Path, ids: list[str]) -> np.ndarray:
    model, _, pre = ophclip.create_model_and_transforms(str(ckpt))
    model.eval()
    out = []
    with torch.no_grad():
        for vid in ids:
            arr = np.load(root / "frames" / f"{vid}.npy")
            frames = arr[[1, 3, 6, 8]]  # centres of 4 equal segments of 10 frames: floor((i + 0.5) * 10 / 4)
            out.append(model.encode_video(pre(frames)[None], normalize=True)[0].numpy())
    return np.stack(out)


def test_build_then_query_by_video_id_and_text(setup):
    tmp, root = setup
    out = tmp / "bank"
    result = runner.invoke(
        app,
        [
            "bank",
            "build",
            str(tmp / "ckpt"),
            str(root),
            "--out",
            str(out),
            "--frames",
            str(N_FRAMES),
            "--batch-size",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    bank = MemoryBank.load(out)
    assert sorted(bank.ids) == [f"v{i}" for i in range(7)]  # the silent pool only
    assert json.loads((out / "build.json").read_text())["count"] == 7

    result = runner.invoke(app, ["bank", "query", str(out), "--video", "v2", "-k", "3"])
    assert result.exit_code == 0, result.output
    # Reference ranking: the query video's own embedding against the bank's stored vectors.
    query = reference_embeddings(tmp / "ckpt", root, ["v2"])
    stored = reference_embeddings(tmp / "ckpt", root, bank.ids)
    np.testing.assert_allclose(bank.get_vectors(bank.ids), stored, atol=1e-5)
    sims = stored @ query[0]
    ranked = [bank.ids[j] for j in np.argsort(-sims) if bank.ids[j] != "v2"][:3]
    shown = [
        line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") >= 3 and "video_id" not in line
    ]
    assert shown == ranked

    result = runner.invoke(
        app, ["bank", "query", str(out), "--text", "the surgeon opens the capsule", "-k", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (
        sum(1 for line in result.output.splitlines() if line.count("│") >= 3 and "video_id" not in line) == 4
    )


def test_gallery_png_and_label_agreement(setup):
    tmp, root = setup
    out = tmp / "bank_g"
    assert (
        runner.invoke(
            app, ["bank", "build", str(tmp / "ckpt"), str(root), "--out", str(out), "--frames", str(N_FRAMES)]
        ).exit_code
        == 0
    )
    labels = tmp / "surgery_types.csv"
    label_of = {f"v{i}": ("cataract" if i % 2 else "glaucoma") for i in range(9)}
    pd.DataFrame({"video_id": list(label_of), "surgery_type": list(label_of.values())}).to_csv(
        labels, index=False
    )
    png = tmp / "report" / "gallery.png"
    result = runner.invoke(
        app,
        ["bank", "gallery", str(out), "--out", str(png), "--labels", str(labels), "-k", "3", "--show", "2"],
    )
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 100
    report = json.loads(png.with_suffix(".json").read_text())
    # Reference: brute-force top-3 of the narrated videos v7, v8 over the silent v0..v6.
    silent = [f"v{i}" for i in range(7)]
    bank_emb = reference_embeddings(tmp / "ckpt", root, silent)
    query_emb = reference_embeddings(tmp / "ckpt", root, ["v7", "v8"])
    hits = 0
    for q, e in zip(["v7", "v8"], query_emb, strict=True):
        top = [silent[j] for j in np.argsort(-(bank_emb @ e))[:3]]
        assert [n["video_id"] for n in report["neighbours"][q]] == top
        hits += sum(label_of[v] == label_of[q] for v in top)
    assert report["label_agreement"] == pytest.approx(hits / 6)
    assert f"agreement {hits / 6:.3f}" in result.output


def test_query_by_video_file(setup, tmp_path):
    import av

    tmp, root = setup
    out = tmp / "bank_file"
    assert (
        runner.invoke(
            app, ["bank", "build", str(tmp / "ckpt"), str(root), "--out", str(out), "--frames", str(N_FRAMES)]
        ).exit_code
        == 0
    )
    video = tmp_path / "query.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for frame in np.load(root / "frames" / "v7.npy"):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    result = runner.invoke(app, ["bank", "query", str(out), "--video", str(video), "-k", "3"])
    assert result.exit_code == 0, result.output
    shown = [
        line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") >= 3 and "video_id" not in line
    ]
    assert len(shown) == 3 and set(shown) <= {f"v{i}" for i in range(7)}
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = runner.invoke(app, ["bank", "query", str(out), "--video", str(broken)])
    from ophclip.errors import DataError

    assert isinstance(result.exception, DataError) and "broken.mp4" in str(result.exception)


def test_query_errors_are_one_clean_line(setup, tmp_path):
    tmp, root = setup
    from ophclip.errors import OphclipError  # the one root the CLI prints as a line

    result = runner.invoke(app, ["bank", "query", str(tmp_path), "--text", "x"])
    assert isinstance(result.exception, OphclipError) and "bank.json not found" in str(result.exception)
    result = runner.invoke(app, ["bank", "query", str(tmp_path)])
    assert isinstance(result.exception, OphclipError) and "exactly one of --text or --video" in str(
        result.exception
    )
