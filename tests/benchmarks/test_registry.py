"""Adapters by name: the registry, each adapter's options section, and the configs written before it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ophclip.config import load_config
from ophclip.datasets import (
    BenchmarkConfig,
    FrameFolderSource,
    ImageListSource,
    LoadedBenchmark,
    VideoFileSource,
    adapter_names,
    adapter_options,
    from_videos,
    get_adapter,
    load_benchmark,
    load_cataract101,
    load_cataracts_tools,
    load_ophnet_surgery,
    register_adapter,
)
from ophclip.datasets import registry as registry_module
from ophclip.datasets.cataracts import CataractsOptions
from ophclip.datasets.ophnet import OphNetOptions
from ophclip.datasets.registry import NoOptions
from ophclip.errors import ConfigError
from ophclip.eval.config import ProbeConfig, ZeroShotConfig

REPO = Path(__file__).resolve().parents[2]
BUILT_IN = ["cataract101", "cataract1k", "cataract21", "cataracts", "generic_images", "generic_segments", "ophnet",
            "synthetic"]


@pytest.fixture
def scratch_registry():
    """Adapters a test registers are forgotten after it."""
    saved = dict(registry_module._ADAPTERS)
    yield
    registry_module._ADAPTERS.clear()
    registry_module._ADAPTERS.update(saved)


def test_every_built_in_adapter_is_registered_with_an_options_dataclass():
    assert adapter_names() == BUILT_IN
    assert get_adapter("cataracts").options is CataractsOptions
    assert get_adapter("ophnet").options is OphNetOptions
    assert get_adapter("synthetic").options is NoOptions


def test_unknown_adapter_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"benchmark\.name = 'cataract-101'; known adapters: cataract101, .*synthetic"):
        load_benchmark(BenchmarkConfig(name="cataract-101", root="x"))


@pytest.mark.parametrize("name,cls", [("eval_cataract101", ZeroShotConfig), ("eval_cataracts", ZeroShotConfig),
                                      ("eval_ophnet", ZeroShotConfig), ("eval_synthetic", ZeroShotConfig),
                                      ("eval_probe_synthetic", ProbeConfig)])
def test_shipped_configs_load_unchanged(name, cls):
    cfg = load_config(cls, REPO / "configs" / f"{name}.yaml")
    options = adapter_options(cfg.benchmark)
    assert isinstance(options, get_adapter(cfg.benchmark.name).options)
    if name == "eval_cataracts":  # written with the old flat fields: they land in the adapter's section
        assert options == CataractsOptions(tools_dir="data/cataracts/tools", half_as="positive")
    if name == "eval_ophnet":
        assert options == OphNetOptions(level="phase", surgery_csv="data/ophnet/OphNet2024_surgery.csv",
                                        annotation_fps=1.0)


def test_options_are_checked_against_the_adapters_dataclass():
    with pytest.raises(ConfigError, match=r"unknown key benchmark\.options\.'tool_dir'.*known keys: half_as, tools_dir"):
        adapter_options(BenchmarkConfig(name="cataracts", options={"tool_dir": "t"}))
    with pytest.raises(ConfigError, match=r"benchmark\.options\.half_as = 'maybe'; expected one of"):
        adapter_options(BenchmarkConfig(name="cataracts", options={"half_as": "maybe"}))
    with pytest.raises(ConfigError, match=r"benchmark\.options\.level = 'step'"):
        adapter_options(BenchmarkConfig(name="ophnet", options={"level": "step"}))
    with pytest.raises(ConfigError, match=r"benchmark\.tools_dir = 'a' but benchmark\.options\.tools_dir = 'b'"):
        adapter_options(BenchmarkConfig(name="cataracts", tools_dir="a", options={"tools_dir": "b"}))
    with pytest.raises(ConfigError, match=r"is a CataractsOptions, but the ophnet adapter takes OphNetOptions"):
        adapter_options(BenchmarkConfig(name="ophnet", options=CataractsOptions()))
    # A flat field another adapter owns is ignored, as it was when every config carried all of them.
    assert adapter_options(BenchmarkConfig(name="cataracts", level="phase")) == CataractsOptions()
    # From Python, the options dataclass itself.
    given = CataractsOptions(tools_dir="t", half_as="ignore")
    assert adapter_options(BenchmarkConfig(name="cataracts", options=given)) == given


def test_options_section_and_overrides_in_yaml(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("benchmark:\n  name: cataracts\n  root: steps\n  options:\n    tools_dir: tools\n")
    cfg = load_config(ZeroShotConfig, path, ["benchmark.options.half_as=ignore"])
    assert adapter_options(cfg.benchmark) == CataractsOptions(tools_dir="tools", half_as="ignore")


def test_flat_and_sectioned_options_load_the_same_benchmark(fixtures_dir):
    steps, tools = fixtures_dir / "cataracts" / "steps", fixtures_dir / "cataracts" / "tools"
    flat = load_benchmark(BenchmarkConfig(name="cataracts", root=str(steps), tools_dir=str(tools), half_as="ignore"))
    sectioned = load_benchmark(BenchmarkConfig(name="cataracts", root=str(steps),
                                               options={"tools_dir": str(tools), "half_as": "ignore"}))
    direct = load_cataracts_tools(tools, half_as="ignore")
    for bench in (flat, sectioned):
        assert np.array_equal(bench.tools.labels["train01"], direct.labels["train01"])
        assert bench.phases.video_ids == ["train01"] and isinstance(bench.source, VideoFileSource)


def test_ophnet_through_the_registry_applies_the_split_and_reads_surgery(fixtures_dir):
    seg = fixtures_dir / "ophnet" / "OphNet2024_loca_challenge.csv"
    surgery_csv = fixtures_dir / "ophnet" / "OphNet2024_surgery.csv"
    bench = load_benchmark(BenchmarkConfig(name="ophnet", root=str(seg), split="train",
                                           options={"surgery_csv": str(surgery_csv), "annotation_fps": 2.0}))
    assert bench.phases.video_ids == ["case_0002"] and bench.phases.video("case_0002")["fps"] == 2.0
    assert bench.surgery.video_ids == load_ophnet_surgery(surgery_csv, seg, split="train").video_ids


def test_frames_dir_and_image_lists(fixtures_dir, tmp_path):
    bench = load_benchmark(BenchmarkConfig(name="cataract101", root=str(fixtures_dir / "cataract101"),
                                           frames_dir=str(tmp_path), frames_stride=25))
    assert isinstance(bench.source, FrameFolderSource) and bench.source.stride == 25
    assert bench.phases.video_ids == load_cataract101(fixtures_dir / "cataract101").video_ids
    (tmp_path / "v1").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "v1" / "f1.png")
    (tmp_path / "list.csv").write_text("path,label\nv1/f1.png,a\n")
    images = load_benchmark(BenchmarkConfig(name="generic_images", root=str(tmp_path / "list.csv")))
    assert isinstance(images.source, ImageListSource) and images.phases.class_names == ["a"]


def test_a_new_adapter_is_one_decorated_function(scratch_registry, fixtures_dir):
    @dataclass
    class RenamedOptions:
        prefix: str = "case_"

    @register_adapter("renamed_c101", RenamedOptions)
    def renamed(cfg: BenchmarkConfig, options: RenamedOptions) -> LoadedBenchmark:
        labels = load_cataract101(cfg.root, video_ids={i: f"{options.prefix}{i}" for i in (101, 102, 103)})
        return from_videos(cfg, labels)

    assert "renamed_c101" in adapter_names()
    bench = load_benchmark(BenchmarkConfig(name="renamed_c101", root=str(fixtures_dir / "cataract101"),
                                           options={"prefix": "v"}))
    assert bench.phases.video_ids == ["v101", "v102", "v103"]
    with pytest.raises(ValueError, match="'renamed_c101' is already registered"):
        register_adapter("renamed_c101")(lambda cfg, options: None)
    with pytest.raises(TypeError, match="options must be a dataclass"):
        register_adapter("broken", options=dict)


def test_the_old_benchmarks_paths_still_import():
    from benchmarks.adapters import FrameLabels, load_synthetic
    from benchmarks.adapters.base import probe_video
    from benchmarks.adapters.loader import NAMES
    from benchmarks.adapters.loader import load_benchmark as old_load_benchmark
    from benchmarks.run import run_probe, run_zeroshot_config
    from ophclip.datasets import FrameLabels as new_frame_labels
    from ophclip.eval.run import run_probe as new_run_probe

    assert FrameLabels is new_frame_labels and old_load_benchmark is load_benchmark and run_probe is new_run_probe
    assert set(NAMES) == set(BUILT_IN) and callable(load_synthetic) and callable(probe_video)
    assert callable(run_zeroshot_config)
