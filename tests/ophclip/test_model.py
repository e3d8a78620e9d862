"""OphCLIP model: encoders, pooling, logit scale, freezing, save/load, and the bigger configs."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

import ophclip
from ophclip.errors import ModelError
from ophclip.model import OphCLIP, TemporalCfg
from ophclip.pretrained import minilm_dir

TINY = "OphCLIP-tiny-MiniLM"
SENTENCES = [
    "the surgeon makes the main incision",
    "phacoemulsification of the nucleus",
    "the surgeon makes the main incision",
]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, preprocess_train, preprocess_eval = ophclip.create_model_and_transforms(TINY)
    return model.eval(), preprocess_train, preprocess_eval


@pytest.fixture(scope="module")
def tokenizer():
    return ophclip.get_tokenizer(TINY)


@pytest.fixture(scope="module")
def minilm_config():
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(minilm_dir()))


def build(config, minilm_config) -> OphCLIP:
    """A model from a changed config; random text weights (the tests using it do not need MiniLM's)."""
    return OphCLIP(config, hf_config=minilm_config)


def video_batch(b=2, t=3, size=64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, size, size, generator=g)


def test_encoders_shapes_and_normalisation(tiny, tokenizer):
    model, _, preprocess = tiny
    assert model.embed_dim == 384 and model.image_size == 64
    frames = np.random.default_rng(0).integers(0, 256, (5, 72, 96, 3), dtype=np.uint8)
    x = preprocess(frames)
    with torch.no_grad():
        img = model.encode_image(x, normalize=True)
        vid = model.encode_video(x.unsqueeze(0), normalize=True)
        txt = model.encode_text(tokenizer(SENTENCES), normalize=True)
        raw = model.encode_image(x)
        pooled, per_frame = model.encode_video(x.unsqueeze(0), normalize=True, return_frames=True)
    torch.testing.assert_close(pooled, vid)
    torch.testing.assert_close(per_frame[0], img, atol=1e-5, rtol=0)  # the frames the clip is pooled from
    assert img.shape == (5, 384) and vid.shape == (1, 384) and txt.shape == (3, 384)
    for emb in (img, vid, txt):
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(emb.shape[0]), atol=1e-5, rtol=0)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(5))  # unnormalised unless asked
    torch.testing.assert_close(txt[0], txt[2])  # identical sentences, identical embeddings


def test_minilm_text_tower_matches_sentence_transformers(tiny, tokenizer):
    """Independent source: sentence-transformers' own all-MiniLM-L6-v2 pipeline (mean pooling + normalise)."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(
        SENTENCES[:2], convert_to_tensor=True
    )
    with torch.no_grad():
        ours = tiny[0].encode_text(tokenizer(SENTENCES[:2]), normalize=True)
    torch.testing.assert_close(ours, F.normalize(reference, dim=-1), atol=1e-5, rtol=0)


def test_video_embedding_is_mean_of_frame_embeddings_and_mask_drops_padding(tiny):
    model = tiny[0]
    video = video_batch(b=2, t=4)
    with torch.no_grad():
        vid = model.encode_video(video)
        frames = model.visual(video.flatten(0, 1)).view(2, 4, -1)  # open_clip tower directly
        torch.testing.assert_close(vid, frames.mean(dim=1), atol=1e-5, rtol=0)
        # Second video has only 2 real frames; padding must not change its embedding.
        mask = torch.tensor([[True] * 4, [True, True, False, False]])
        padded = video.clone()
        padded[1, 2:] = 0
        masked = model.encode_video(padded, mask=mask)
        torch.testing.assert_close(masked[1], model.encode_video(video[1:, :2])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(masked[0], vid[0], atol=1e-5, rtol=0)


def test_temporal_transformer_starts_as_mean_pooling_then_learns(tiny, minilm_config):
    config = ophclip.get_model_config(TINY)
    config.temporal_cfg = TemporalCfg(pool="transformer", layers=1, heads=4, max_frames=8)
    torch.manual_seed(0)
    model = build(config, minilm_config)
    model.visual.load_state_dict(tiny[0].visual.state_dict())
    video = video_batch(b=2, t=4, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), tiny[0].encode_video(video), atol=1e-5, rtol=0)
    model.train()
    out = model.encode_video(video, normalize=True)
    out.sum().backward()
    assert model.temporal.encoder.layers[0].linear2.weight.grad.abs().sum() > 0
    with pytest.raises(ModelError, match="max_frames"):
        model.encode_video(video_batch(b=1, t=9))


def test_bad_shapes_raise_model_error(tiny, tokenizer):
    model = tiny[0]
    with pytest.raises(ModelError, match="encode_video takes"):
        model.encode_video(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ModelError, match="encode_image takes"):
        model.encode_image(torch.zeros(2, 4, 3, 64, 64))
    with pytest.raises(ModelError, match="dict made by"):
        model.encode_text(torch.zeros(2, 5, dtype=torch.long))


def test_logit_scale_learnable_clamped_or_fixed(minilm_config):
    config = ophclip.get_model_config(TINY)
    model = build(config, minilm_config)
    assert isinstance(model.logit_scale, torch.nn.Parameter) and model.logit_scale.requires_grad
    assert model.get_logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500.0))
    assert model.get_logit_scale().item() == pytest.approx(100.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))

    config.logit_scale_learnable = False
    config.init_temperature = 0.1
    fixed = build(config, minilm_config)
    assert "logit_scale" not in dict(fixed.named_parameters())
    assert "logit_scale" in fixed.state_dict()
    assert fixed.get_logit_scale().item() == pytest.approx(10.0, rel=1e-6)


def test_text_frozen_flag_controls_text_gradients(tiny, tokenizer):
    frozen = tiny[0]
    assert frozen.text_tower_is_frozen
    frozen.train()
    assert not frozen.text.training and frozen.visual.training  # frozen tower stays in eval (no dropout)
    frozen.eval()
    n = frozen.num_parameters()
    assert n["trainable"] == n["vision"] + 1  # vision tower + logit scale

    trainable = ophclip.create_model(TINY, text_frozen=False).train()
    assert not trainable.text_tower_is_frozen
    trainable.encode_text(tokenizer(SENTENCES[:2]), normalize=True).sum().backward()
    grads = [p.grad for p in trainable.text.parameters() if p.requires_grad]
    # No parameter without a gradient (the BERT pooler is dropped), or DDP would complain.
    assert grads and all(g is not None for g in grads)


def test_grad_checkpointing_gives_same_gradients(tiny):
    model = copy.deepcopy(tiny[0]).train()
    video = video_batch(b=2, t=2, seed=2)

    def grads():
        model.zero_grad()
        model.encode_video(video, normalize=True).pow(2).sum().backward()
        return [p.grad.clone() for p in model.visual.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_forward_returns_open_clip_style_dict(tiny, tokenizer):
    model = tiny[0]
    with torch.no_grad():
        out = model(video_batch(b=2, t=2), tokenizer(SENTENCES[:2]))
        frames = model(video_batch(b=1, t=2)[0])
    assert set(out) == {"video_features", "text_features", "logit_scale"}
    assert set(frames) == {"image_features", "logit_scale"}
    assert out["logit_scale"].item() == pytest.approx(model.logit_scale.exp().item())


def test_save_pretrained_round_trip_is_self_contained(tiny, tokenizer, tmp_path, monkeypatch):
    model = tiny[0]
    with torch.no_grad():
        model.logit_scale.fill_(2.5)  # a non-initial value must survive the round trip
    info = {
        "data": "synthetic cataract videos (24 narrated)",
        "metrics": {"zero_shot_phase_acc": 0.25},
        "steps": 10,
    }
    model.save_pretrained(tmp_path, training_info=info)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "model.safetensors",
        "ophclip_config.json",
        "text_tower",
    ]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    card = (tmp_path / "README.md").read_text()
    assert (
        "VisionTransformer, 4 layers, width 128, patch 8" in card
        and "zero_shot_phase_acc" in card
        and "synthetic cataract" in card
    )

    # The saved folder must load with no embedded MiniLM and no hub.
    def unavailable():
        raise AssertionError("loading a saved model must not need the embedded MiniLM")

    monkeypatch.setattr("ophclip.model.minilm_dir", unavailable)  # the name resolve_hf_source calls
    loaded = OphCLIP.from_pretrained(tmp_path).eval()
    assert loaded.config.to_dict()["vision_cfg"] == model.config.to_dict()["vision_cfg"]
    assert loaded.text_tower_is_frozen and loaded.config.model_name == TINY
    video = video_batch(b=2, t=3, seed=3)
    tokens = tokenizer(SENTENCES)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(video), model.encode_video(video), atol=0, rtol=0)
        torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens), atol=0, rtol=0)
    assert loaded.logit_scale.item() == pytest.approx(2.5)
    reloaded_tokens = ophclip.get_tokenizer(tmp_path)(SENTENCES)
    assert torch.equal(reloaded_tokens["input_ids"], tokens["input_ids"])
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))


def test_loading_mismatched_weights_names_the_keys(tiny, tmp_path, minilm_config):
    tiny[0].save_pretrained(tmp_path)
    config = ophclip.get_model_config(TINY)
    config.temporal_cfg = TemporalCfg(pool="transformer", heads=4)
    other = build(config, minilm_config)
    with pytest.raises(ModelError, match="missing.*temporal"):
        other.load_weights(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not read weights"):
        OphCLIP.from_pretrained(tmp_path)
    os.remove(tmp_path / "ophclip_config.json")
    with pytest.raises(ModelError, match="not a saved OphCLIP model"):
        OphCLIP.from_pretrained(tmp_path)


def test_vit_b_16_openai_weights_offline_give_a_clear_error():
    with pytest.raises(
        ModelError, match="could not fetch open_clip weights 'openai' for ViT-B-16.*pretrained=None"
    ):
        ophclip.create_model("OphCLIP-ViT-B-16", pretrained="openai")


@pytest.mark.slow
def test_vit_b_16_is_open_clip_architecture():
    model = ophclip.create_model("OphCLIP-ViT-B-16")
    reference = open_clip.create_model(
        "ViT-B-16", pretrained=None, force_custom_text=True, force_quick_gelu=True
    )
    for ours, theirs in ((model.visual, reference.visual), (model.text, reference.text)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    # Same weights -> same outputs: the towers are open_clip's, with its CLIP tokenizer.
    model.visual.load_state_dict(reference.visual.state_dict())
    model.text.load_state_dict(reference.text.state_dict())
    model.eval(), reference.eval()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    tokens = ophclip.get_tokenizer("OphCLIP-ViT-B-16")(["capsulorhexis"])
    torch.testing.assert_close(tokens, open_clip.get_tokenizer("ViT-B-16")(["capsulorhexis"]))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), reference.encode_image(image))
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens))


def test_rn50_bioclinicalbert_offline_error_and_local_folder(tmp_path):
    with pytest.raises(ModelError, match="Bio_ClinicalBERT.*text_model_path"):
        ophclip.create_model("OphCLIP-RN50-BioClinicalBERT")
    # A local folder works offline; a small BERT with MiniLM's vocabulary stands in for the real download.
    from transformers import AutoTokenizer, BertConfig, BertModel

    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(tmp_path)
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=128,
        )
    ).save_pretrained(tmp_path)
    model = ophclip.create_model("OphCLIP-RN50-BioClinicalBERT", text_model_path=tmp_path).eval()
    assert type(model.visual).__name__ == "ModifiedResNet" and not model.config.logit_scale_learnable
    assert model.get_logit_scale().item() == pytest.approx(10.0, rel=1e-6)
    tokens = ophclip.get_tokenizer("OphCLIP-RN50-BioClinicalBERT", text_model_path=tmp_path)(["iris hooks"])
    with torch.no_grad():
        assert model.encode_text(tokens, normalize=True).shape == (1, 1024)
        assert model.encode_image(torch.randn(1, 3, 224, 224), normalize=True).shape == (1, 1024)
