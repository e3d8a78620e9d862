"""Prompt files: the shipped ones fit their adapters; bad files give errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ophclip.errors import ConfigError
from ophclip.prompts import load_prompt_file, select_prompts

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "ophclip" / "prompts"
FIXTURES = REPO / "benchmarks" / "fixtures"


def _classes_from_sources() -> dict[str, dict[str, list[str]]]:
    """Class lists from the datasets' own sources (phases.csv, the synth taxonomy), not from the prompt files."""
    import pandas as pd

    from data_pipeline.synth.taxonomy import ALL_TOOLS, SURGERY_TYPES
    from ophclip.datasets import cataract1k, cataract21, cataracts

    c101 = ["Idle"] + list(pd.read_csv(FIXTURES / "cataract101" / "phases.csv", sep=";").Meaning)
    c101_full = ["Idle", "Incision", "Viscous agent injection", "Rhexis", "Hydrodissection", "Phacoemulsificiation",
                 "Irrigation and aspiration", "Capsule polishing", "Lens implant setting-up", "Viscous agent removal",
                 "Tonifying and antibiotics"]
    assert c101 == c101_full[:4]
    synth_phases = ["Idle"] + [p.name for st in SURGERY_TYPES.values() for p in sorted(st.phases, key=lambda p: p.id)]
    return {
        "cataract101.yaml": {"phase": c101_full},
        "cataract21.yaml": {"phase": cataract21.PHASE_NAMES},
        "cataract1k.yaml": {"phase": cataract1k.PHASE_NAMES},
        "cataracts.yaml": {"phase": cataracts.STEP_NAMES, "tools": cataracts.TOOL_NAMES},
        "synthetic.yaml": {"phase": synth_phases, "tools": list(ALL_TOOLS), "surgery_type": sorted(SURGERY_TYPES)},
        "generic.yaml": {"phase": ["idle", "incision", "phaco"]},
    }


@pytest.mark.parametrize("name", ["cataract101.yaml", "cataract21.yaml", "cataract1k.yaml", "cataracts.yaml",
                                  "synthetic.yaml", "generic.yaml"])
def test_shipped_prompt_files_fit_their_benchmarks(name):
    sections = load_prompt_file(PROMPTS / name)
    for task, classes in _classes_from_sources()[name].items():
        chosen = select_prompts(sections, task, classes)
        assert chosen.class_names == list(classes)
        for c in classes:
            assert chosen.texts(c) and all("{}" not in t for t in chosen.texts(c))


def test_ophnet_prompts_fit_the_default_names_of_the_real_files():
    from ophclip.datasets.ophnet import load_ophnet_phases, load_ophnet_surgery

    real = REPO.parent / "shared" / "real" / "ophnet"
    if not (real / "OphNet2024_loca_challenge.csv").is_file():
        pytest.skip(f"real OphNet files not found at {real}")
    phases = load_ophnet_phases(real / "OphNet2024_loca_challenge.csv")
    surgery = load_ophnet_surgery(real / "OphNet2024_surgery.csv")
    select_prompts(PROMPTS / "ophnet.yaml", "phase", phases.class_names)
    select_prompts(PROMPTS / "ophnet.yaml", "surgery_type", surgery.class_names)


def test_texts_are_sentences_times_templates(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("templates: ['a photo of {}.', 'we see {}']\nphase:\n  classes:\n    A: [x, y]\n    B: z\n")
    ps = select_prompts(f, "phase", ["B", "A"])
    assert ps.class_names == ["B", "A"]  # the benchmark's order
    assert ps.texts("A") == ["a photo of x.", "we see x", "a photo of y.", "we see y"]
    assert ps.texts("B") == ["a photo of z.", "we see z"]
    assert ps.negative_texts("A") == ["a surgical video frame with no x in view."]


@pytest.mark.parametrize(
    "body,classes,message",
    [
        ("phase:\n  classes:\n    A: [x]\n    Q: [y]\n", ["A"], r"unknown class 'Q'"),
        ("phase:\n  classes:\n    A: [x]\n", ["A", "B"], r"class 'B' has no prompt"),
        ("phase:\n  classes:\n    A: []\n", ["A"], r"classes\.A: empty prompt list"),
        ("phase:\n  classes:\n    A: ['  ']\n", ["A"], r"A\[0\].*not a non-empty sentence"),
        ("templates: ['no placeholder']\nphase:\n  classes:\n    A: [x]\n", ["A"], r"must be a string containing"),
        ("phsae:\n  classes:\n    A: [x]\n", ["A"], r"unknown top-level key 'phsae'"),
        ("phase:\n  clases:\n    A: [x]\n", ["A"], r"unknown key 'clases'"),
        ("tools:\n  classes:\n    A: [x]\n", ["A"], r"no 'phase' section"),
        ("phase: [1, 2]\n", ["A"], r"expected a mapping"),
        ("phase:\n  classes: {A: [x]\n", ["A"], r"not valid YAML"),
        ("- a\n- b\n", ["A"], r"expected a mapping"),
    ],
)
def test_bad_prompt_files_name_the_file(tmp_path, body, classes, message):
    f = tmp_path / "my_prompts.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=message) as info:
        select_prompts(f, "phase", classes)
    assert "my_prompts.yaml" in str(info.value)


def test_missing_prompt_file(tmp_path):
    with pytest.raises(ConfigError, match=r"prompt file not found: .*absent\.yaml"):
        load_prompt_file(tmp_path / "absent.yaml")
