"""Distillation: the student in the teacher's space, the losses against their formulas, a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import ophclip
from ophclip.config import load_config
from ophclip.distill import (
    DistillConfig,
    DistillLoss,
    DistillLossCfg,
    build_student,
    cosine_distance,
    similarity_kl,
)
from ophclip.errors import ConfigError, ModelError
from ophclip.train.objectives.distill import distill

REPO = Path(__file__).resolve().parents[2]
TEACHER = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"type": "open_clip", "context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    "temporal_cfg": {"pool": "transformer", "layers": 1, "heads": 2, "max_frames": 8},
}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill_cfg")
    (folder / "Test-distill-teacher.json").write_text(json.dumps(TEACHER))
    ophclip.add_model_config(folder / "Test-distill-teacher.json")
    torch.manual_seed(0)
    model = ophclip.create_model("Test-distill-teacher")
    with torch.no_grad():  # move the temporal transformer off its mean-pooling start, so copying it matters
        for p in model.temporal.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


# --------------------------------------------------------------------------- losses against formulas


def test_similarity_kl_matches_the_textbook_formula():
    g = torch.Generator().manual_seed(0)
    s, t, texts = (F.normalize(torch.randn(n, 8, generator=g), dim=-1) for n in (5, 5, 11))
    scale, temp = 12.0, 2.0
    ps = torch.softmax(scale * s @ texts.T / temp, -1).double().numpy()
    pt = torch.softmax(scale * t @ texts.T / temp, -1).double().numpy()
    expected = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * temp**2
    assert float(similarity_kl(s, t, texts, scale, temp)) == pytest.approx(expected, rel=1e-5)
    assert float(similarity_kl(t, t, texts, scale)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_distance_and_weighted_total():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    an, bn = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True), b.numpy() / np.linalg.norm(b.numpy(), axis=1, keepdims=True)
    assert float(cosine_distance(a, b)) == pytest.approx(float(np.mean(1 - (an * bn).sum(1))), rel=1e-5)
    cfg = DistillLossCfg(frame_weight=0.5, clip_weight=2.0, kl_weight=0.0, contrastive_weight=0.0)
    fa, fb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    terms = DistillLoss(cfg)(fa, fb, fa[:3], fb[:3], 10.0)
    assert float(terms["kl"]) == 0.0 and float(terms["contrastive"]) == 0.0
    expected = 0.5 * float(cosine_distance(fa, fb)) + 2.0 * float(cosine_distance(fa[:3], fb[:3]))
    assert float(terms["total"]) == pytest.approx(expected, rel=1e-6)


def test_contrastive_term_is_symmetric_infonce_on_narrated_clips_only():
    g = torch.Generator().manual_seed(2)
    clips, texts = (F.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(2))
    ids = torch.tensor([0, -1, 2, 3])  # clip 1 is a silent window
    cfg = DistillLossCfg(frame_weight=0.0, clip_weight=0.0, kl_weight=0.0, contrastive_weight=1.0, repeated_text="negative")
    got = float(DistillLoss(cfg)(clips, clips, clips, clips, 10.0, None, ids, texts)["contrastive"])
    keep = [0, 2, 3]
    logits = 10.0 * clips[keep] @ texts[keep].T
    labels = torch.arange(3)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert got == pytest.approx(float(expected), rel=1e-5)


# --------------------------------------------------------------------------- the student


def test_incompatible_embedding_dims_without_projector_is_an_error(teacher):
    with pytest.raises(ModelError, match=r"96 dimensions but teacher Test-distill-teacher into 32.*projector"):
        build_student(teacher, "OphCLIP-student-ViT-Micro", projector="none")


def test_student_lives_in_the_teachers_space_with_its_text_side(teacher):
    student = build_student(teacher, "OphCLIP-student-ViT-Micro", image_size=32, projector="linear")
    assert student.embed_dim == teacher.embed_dim == 32
    assert student.image_size == 32 and student.visual.proj.shape == (96, 32)  # width 96 -> teacher dim
    tokens = ophclip.get_tokenizer("Test-distill-teacher")(["phacoemulsification", "capsulorhexis"])
    with torch.no_grad():
        torch.testing.assert_close(student.encode_text(tokens), teacher.encode_text(tokens))
        feats = torch.randn(2, 5, 32)
        torch.testing.assert_close(student.pool_frames(feats), teacher.pool_frames(feats))
    assert float(student.get_logit_scale().detach()) == pytest.approx(float(teacher.get_logit_scale().detach()))
    trainable = {n.split(".")[0] for n, p in student.named_parameters() if p.requires_grad}
    assert trainable == {"visual"}
    # Exactly open_clip's 2-layer, 96-wide ViT with its output projection sized to the teacher's 32 dims.
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    reference = _build_vision_tower(32, CLIPVisionCfg(image_size=32, layers=2, width=96, head_width=32, patch_size=8))
    assert sum(p.numel() for p in student.visual.parameters()) == sum(p.numel() for p in reference.parameters())


def test_saved_student_loads_with_from_pretrained(tmp_path, teacher):
    student = build_student(teacher, "OphCLIP-student-ViT-Micro", image_size=32).eval()
    folder = student.save_pretrained(tmp_path / "student", training_info={"teacher": "Test-distill-teacher"})
    loaded = ophclip.OphCLIP.from_pretrained(folder).eval()
    x = torch.randn(3, 3, 32, 32)
    tokens = ophclip.get_tokenizer(folder)(["irrigation and aspiration"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), student.encode_image(x))
        torch.testing.assert_close(loaded.encode_text(tokens), teacher.encode_text(tokens))
    assert "Test-distill-teacher" in (folder / "README.md").read_text()


def test_unknown_projector_and_empty_root_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="student.projector"):
        distill(load_config(DistillConfig, None, ["student.projector=mlp", f"data.root={tmp_path}"]), progress=False)
    with pytest.raises(ConfigError, match="data.root is empty"):
        distill(load_config(DistillConfig, None, []), progress=False)


def test_shipped_configs_load():
    for path in sorted((REPO / "configs").glob("distill_*.yaml")):
        cfg = load_config(DistillConfig, path, ["data.root=x"])
        assert cfg.student.name in ophclip.list_models()


# --------------------------------------------------------------------------- a real tiny run


@pytest.mark.slow  # about 50 s on a loaded 2-core machine: MiniLM teacher, 10 steps, save, stream a video
def test_distillation_loss_falls_and_the_student_streams(synth_tiny_root, synth_tiny_dir, tmp_path):
    """The `ophclip demo` stages on the tiny set: distil, then stream a held-out video with the teacher's prompts."""
    from ophclip.demo import DemoContext, demo_distill_stage
    from ophclip.stream import demo_stream_stage

    ctx = DemoContext(tmp_path / "demo")
    ctx.out_dir.mkdir()
    ctx.synth_dir.symlink_to(synth_tiny_dir)
    ctx.root_dir.symlink_to(synth_tiny_root)
    demo_distill_stage(ctx, ["train.steps=10", "train.batch_size=4", "data.clip_frames=2", "train.warmup_steps=2",
                             "train.lr=2e-3"], progress=False)
    done = ctx.results["distill"]
    losses = done["history"]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    # The synthetic held-out (eval) videos never feed distillation; count from the manifests directly.
    videos = pd.read_parquet(synth_tiny_root / "videos.parquet")
    clips = pd.read_parquet(synth_tiny_root / "clips.parquet")
    eval_ids = set(videos.loc[videos["split"] == "eval", "video_id"])
    assert eval_ids
    assert done["counts"]["narrated_windows"] == int((~clips["video_id"].isin(eval_ids)).sum())
    student_dir = Path(done["student_dir"])
    card = (student_dir / "README.md").read_text()
    assert "OphCLIP-tiny-MiniLM" in card and "agreement/frame_cosine" in card
    assert -1.0 <= done["agreement"]["frame_cosine"] <= 1.0
    assert 0.0 <= done["agreement"]["phase_top1_agreement"] <= 1.0

    # The saved student loads like any model and streams a held-out synthetic video with the teacher's prompts, unchanged.
    section = demo_stream_stage(ctx)
    streamed = ctx.results["stream"]
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv")
    row = meta[meta["split"] == "eval"].iloc[0]
    with av.open(str(synth_tiny_dir / row["path"])) as c:  # independent frame count
        n_frames = sum(1 for _ in c.decode(video=0))
    assert streamed["video_id"] == row["video_id"] and streamed["latency"]["frames"] == n_frames
    assert 0.0 <= streamed["accuracy"] <= 1.0
    assert (ctx.out_dir / "stream_ribbon.png").stat().st_size > 0 and "frames/s" in section


def test_the_demo_distils_a_teacher_pretrained_by_an_earlier_demo_invocation(tmp_path):
    from ophclip.demo import DemoContext, demo_teacher

    ctx = DemoContext(tmp_path)
    assert demo_teacher(ctx) is None  # nothing pretrained: the random-init default
    final = tmp_path / "pretrain" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"")
    assert demo_teacher(ctx) == str(final)
    ctx.results["pretrain"] = {"model_dir": "this/run"}
    assert demo_teacher(ctx) == "this/run"
