"""`model.init_vision_from`: pretraining starts its vision tower from another model's saved weights."""

from __future__ import annotations

import torch
from conftest import tiny_overrides

from ophclip.config import load_config
from ophclip.train import PretrainConfig, build_components


def test_vision_tower_is_loaded_and_text_tower_is_not(dataset_root, tiny_model_config, tmp_path):
    source = build_components(load_config(PretrainConfig, None, tiny_overrides(dataset_root, tiny_model_config, tmp_path)))
    source.model.save_pretrained(tmp_path / "source")

    cfg = load_config(PretrainConfig, None, [*tiny_overrides(dataset_root, tiny_model_config, tmp_path),
                                             f"model.init_vision_from={tmp_path / 'source'}"])
    fresh = build_components(load_config(PretrainConfig, None, tiny_overrides(dataset_root, tiny_model_config, tmp_path)))
    warm = build_components(cfg)

    src_visual = source.model.visual.state_dict()
    for name, value in warm.model.visual.state_dict().items():
        assert torch.equal(value, src_visual[name]), name
    # Two random inits differ, so equality above means the weights were loaded, not re-drawn alike.
    assert any(not torch.equal(v, src_visual[k]) for k, v in fresh.model.visual.state_dict().items())
    src_text = dict(source.model.named_parameters())
    assert any(not torch.equal(p, src_text[n]) for n, p in warm.model.named_parameters() if not n.startswith("visual."))
