"""Registry, constructors and tokenizers."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from transformers import AutoTokenizer

import ophclip
from ophclip import factory
from ophclip.errors import ModelError
from ophclip.pretrained import minilm_dir

TINY = "OphCLIP-tiny-MiniLM"
SHIPPED = {"OphCLIP-tiny-MiniLM", "OphCLIP-tiny-RN-MiniLM", "OphCLIP-student-RN-Micro", "OphCLIP-ViT-B-16", "OphCLIP-RN50-BioClinicalBERT"}


@pytest.fixture
def restore_registry():
    paths = list(factory._CONFIG_PATHS)
    yield
    factory._CONFIG_PATHS[:] = paths
    factory._rescan_model_configs()
    ophclip.get_tokenizer.cache_clear()


def test_shipped_configs_are_listed_and_parse():
    assert SHIPPED <= set(ophclip.list_models())
    for name in SHIPPED:
        config = ophclip.get_model_config(name)
        assert config.model_name == name
        assert config.preprocess_cfg.image_size == config.vision_cfg.image_size
        # to_dict -> from_dict is lossless (what save_pretrained relies on)
        assert type(config).from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelError) as err:
        ophclip.create_model_and_transforms("OphCLIP-ViT-H-14")
    message = str(err.value)
    assert "OphCLIP-ViT-H-14" in message and all(name in message for name in SHIPPED)
    with pytest.raises(ModelError, match="known models"):
        ophclip.get_tokenizer("nope")


def test_add_model_config_registers_file_and_rejects_unknown_keys(tmp_path, restore_registry):
    base = json.loads((factory._BUILTIN_CONFIG_DIR / f"{TINY}.json").read_text())
    base["vision_cfg"]["layers"] = 1
    (tmp_path / "My-Tiny.json").write_text(json.dumps(base))
    ophclip.add_model_config(tmp_path / "My-Tiny.json")
    assert "My-Tiny" in ophclip.list_models() and TINY in ophclip.list_models()
    assert ophclip.get_model_config("My-Tiny").vision_cfg.layers == 1

    bad = dict(base, vision_cfg=dict(base["vision_cfg"], depth=3))
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "Bad.json").write_text(json.dumps(bad))
    ophclip.add_model_config(tmp_path / "more")
    with pytest.raises(ModelError, match=r"Bad.json: vision_cfg: unknown key\(s\) \['depth'\]"):
        ophclip.get_model_config("Bad")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "Broken.json").write_text("{not json")
    with pytest.raises(ModelError, match="Broken.json could not be read as JSON"):
        ophclip.add_model_config(tmp_path / "broken")


def test_hf_tokenizer_is_cached_and_matches_transformers():
    tok = ophclip.get_tokenizer(TINY)
    assert tok is ophclip.get_tokenizer(TINY)
    texts = ["the capsulorhexis is completed", "irrigation and aspiration of the cortex"]
    ours = tok(texts)
    reference = AutoTokenizer.from_pretrained(str(minilm_dir()))(texts, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assert torch.equal(ours["attention_mask"], reference["attention_mask"])
    long = tok(["word " * 200])
    assert long["input_ids"].shape == (1, ophclip.get_model_config(TINY).text_cfg.context_length)


def test_open_clip_tokenizer_matches_open_clip():
    tok = ophclip.get_tokenizer("OphCLIP-ViT-B-16")
    texts = ["a photo of phacoemulsification", "viscoelastic injection"]
    assert torch.equal(tok(texts), open_clip.get_tokenizer("ViT-B-16")(texts))


@pytest.mark.parametrize("name", [TINY, "OphCLIP-tiny-RN-MiniLM"])  # a ViT and a ModifiedResNet tower
def test_pretrained_folder_and_saved_name_both_load(tmp_path, name):
    torch.manual_seed(3)
    model, _, preprocess = ophclip.create_model_and_transforms(name)
    model.save_pretrained(tmp_path)
    from_name, train_tf, eval_tf = ophclip.create_model_and_transforms(
        name, pretrained=tmp_path, text_frozen=False
    )
    from_dir = ophclip.create_model(tmp_path)
    for loaded in (from_name, from_dir):
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    assert not from_name.text_tower_is_frozen and from_dir.text_tower_is_frozen
    assert eval_tf.preprocess == preprocess.preprocess and train_tf.is_augmenting


def test_bad_pretrained_values_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="has no ophclip_config.json"):
        ophclip.create_model(TINY, pretrained=tmp_path)
    with pytest.raises(ModelError, match="has no open_clip_arch"):
        ophclip.create_model(TINY, pretrained="openai")
    with pytest.raises(ModelError, match="text_model_path applies to Hugging Face"):
        ophclip.create_model("OphCLIP-ViT-B-16", text_model_path=tmp_path)
    with pytest.raises(ModelError, match="not a Hugging Face model folder"):
        ophclip.create_model(TINY, text_model_path=tmp_path)


def test_open_clip_checkpoint_file_loads_into_matching_towers(tmp_path, restore_registry):
    """pretrained=<open_clip checkpoint> copies open_clip's towers and logit scale; outputs then equal open_clip's."""
    arch = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "oc").mkdir()
    (tmp_path / "oc" / "OphTest-oc-tiny.json").write_text(json.dumps(arch))
    open_clip.add_model_config(tmp_path / "oc")
    torch.manual_seed(5)
    reference = open_clip.create_model("OphTest-oc-tiny", pretrained=None, force_custom_text=True).eval()
    with torch.no_grad():
        reference.logit_scale.fill_(3.0)
    checkpoint = tmp_path / "open_clip_model.pt"
    torch.save({"state_dict": reference.state_dict()}, checkpoint)

    ours_cfg = {
        **arch,
        "open_clip_arch": "OphTest-oc-tiny",
        "text_cfg": {"type": "open_clip", **arch["text_cfg"]},
    }
    (tmp_path / "OphTest-tiny.json").write_text(json.dumps(ours_cfg))
    ophclip.add_model_config(tmp_path / "OphTest-tiny.json")
    model = ophclip.create_model("OphTest-tiny", pretrained=str(checkpoint)).eval()
    assert model.logit_scale.item() == pytest.approx(3.0)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    tokens = ophclip.get_tokenizer("OphTest-tiny")(["trypan blue staining", "wound hydration"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), reference.encode_image(image), atol=0, rtol=0)
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens), atol=0, rtol=0)
    with pytest.raises(ModelError, match="could not fetch open_clip weights"):
        ophclip.create_model("OphTest-tiny", pretrained=str(tmp_path / "missing.pt"))


def test_registry_survives_a_deleted_config_folder(tmp_path, restore_registry):
    base = json.loads((factory._BUILTIN_CONFIG_DIR / f"{TINY}.json").read_text())
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "Temp-Model.json").write_text(json.dumps(base))
    ophclip.add_model_config(gone)
    assert "Temp-Model" in ophclip.list_models()
    (gone / "Temp-Model.json").unlink()
    gone.rmdir()
    (tmp_path / "Other.json").write_text(json.dumps(base))
    ophclip.add_model_config(tmp_path / "Other.json")
    assert "Other" in ophclip.list_models() and "Temp-Model" not in ophclip.list_models()


def test_import_ophclip_is_light_until_a_model_is_needed():
    """The CLI imports ophclip for its config module; torch/open_clip load only when the model API is used."""
    import subprocess
    import sys

    code = "import sys, ophclip, ophclip.config; assert 'torch' not in sys.modules; ophclip.list_models; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
