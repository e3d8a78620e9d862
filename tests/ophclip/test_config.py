"""Typed YAML configs: strict loading, dotted overrides, round-trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from ophclip.config import apply_overrides, dump_yaml, load_config, save_config
from ophclip.errors import ConfigError


@dataclass
class OptimCfg:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass
class RunCfg:
    name: str = "run"
    steps: int = 10
    amp: bool = False
    seed: int | None = None
    tags: list[str] = field(default_factory=list)
    optim: OptimCfg = field(default_factory=OptimCfg)


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(RunCfg)
    assert cfg == RunCfg()


def test_yaml_and_overrides_are_applied_in_order(tmp_path):
    path = write(tmp_path, "steps: 5\noptim:\n  lr: 0.1\n")
    cfg = load_config(RunCfg, path, ["optim.lr=3e-4", "tags=[a, b]", "seed=7", "optim.schedule=constant"])
    assert cfg.steps == 5
    assert cfg.optim.lr == pytest.approx(3e-4)  # "3e-4" is a YAML string; it must still become a float
    assert cfg.tags == ["a", "b"]
    assert cfg.seed == 7
    assert cfg.optim.schedule == "constant"
    assert cfg.optim.betas == (0.9, 0.98)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, path)
    assert "optim.'lrr'" in str(e.value) or "'lrr'" in str(e.value)
    assert str(path) in str(e.value)
    assert "known keys" in str(e.value)


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(RunCfg, None, ["nope=1"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("steps=ten", "expected an integer"),
        ("steps=1.5", "expected an integer"),
        ("amp=maybe", "expected true or false"),
        ("optim.lr=fast", "expected a number"),
        ("optim.schedule=linear", "expected one of"),
        ("optim.betas=[0.9]", "should have 2 items"),
        ("tags=notalist", "should be a list"),
        ("optim=3", "should be a mapping"),
    ],
)
def test_wrong_types_are_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(RunCfg, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(RunCfg, tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(RunCfg, write(tmp_path, "steps: [1,\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(RunCfg, write(tmp_path, "- 1\n- 2\n"))


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="empty key"):
        apply_overrides({}, ["a..b=1"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 1}, ["steps.x=1"])


def test_save_round_trip(tmp_path):
    cfg = load_config(RunCfg, None, ["optim.lr=0.5", "tags=[x]"])
    out = tmp_path / "sub" / "resolved.yaml"
    save_config(cfg, out)
    assert not list(out.parent.glob("*.tmp"))
    assert load_config(RunCfg, out) == cfg
    assert "lr: 0.5" in dump_yaml(cfg)


def test_off_and_no_stay_strings_as_in_yaml_1_2(tmp_path):
    """YAML 1.1 would read `off` as False; a string field must get the word the user wrote."""
    from ophclip.train import PretrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("retrieval:\n  mode: off\nlog:\n  tensorboard: false\n")
    cfg = load_config(PretrainConfig, path)
    assert cfg.retrieval.mode == "off" and cfg.log.tensorboard is False
    cfg = load_config(PretrainConfig, None, ["retrieval.mode=feature_aug", "retrieval.mode=off", "log.jsonl=False"])
    assert cfg.retrieval.mode == "off" and cfg.log.jsonl is False


def test_renamed_keys_still_load_with_a_warning_and_a_clash_is_an_error(tmp_path):
    """Configs written before the ``retrieval:`` section (loss.retrieval_*, memory:) load into it."""
    from ophclip.train import PretrainConfig

    path = tmp_path / "old.yaml"
    path.write_text("loss:\n  retrieval_mode: soft_positive\n  retrieval_weight: 0.25\n  repeated_text: negative\n"
                    "memory:\n  k: 7\n  refresh: incremental\n")
    with pytest.warns(FutureWarning, match="loss.retrieval_mode is deprecated; write retrieval.mode"):
        cfg = load_config(PretrainConfig, path, ["memory.warmup_steps=3"])
    assert (cfg.retrieval.mode, cfg.retrieval.weight, cfg.retrieval.k) == ("soft_positive", 0.25, 7)
    assert (cfg.retrieval.refresh, cfg.retrieval.warmup_steps) == ("incremental", 3)
    assert cfg.loss.repeated_text == "negative"  # the rest of the old section is untouched
    with pytest.warns(FutureWarning):  # an override in the new spelling wins over the old-spelled file
        assert load_config(PretrainConfig, path, ["retrieval.k=2", "retrieval.mode=feature_aug"]).retrieval.k == 2
    both = tmp_path / "both.yaml"
    both.write_text("memory:\n  k: 7\nretrieval:\n  k: 2\n")
    with pytest.raises(ConfigError, match="memory .*and retrieval are both set, differently \\(k\\)"):
        load_config(PretrainConfig, both)
    both.write_text("memory:\nretrieval:\n  k: 2\nloss:\n  retrieval_mode: soft_positive\n")
    with pytest.warns(FutureWarning):  # an empty old section moves nothing and clashes with nothing
        cfg = load_config(PretrainConfig, both)
    assert (cfg.retrieval.k, cfg.retrieval.mode) == (2, "soft_positive")
