"""The synthetic dataset generator: config errors, determinism, ground truth, mp4 and speech placement.

Expected values come from independent sources: the real benchmarks' published names
and formats (written out here, or read from ../shared/real when present), files decoded
with PyAV, and the generator's own ground-truth files checked against each other.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from data_pipeline.synth import SynthConfig, plan_video, render_frames
from data_pipeline.synth.plan import dataset_plan
from data_pipeline.synth.taxonomy import SURGERY_TYPES, check_taxonomy
from data_pipeline.synth.video import generate_video
from ophclip.config import load_config
from ophclip.errors import ConfigError

REAL_C101 = Path(__file__).resolve().parents[3] / "shared" / "real" / "cataract-101" / "phases.csv"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# Cataract-101's ten phases, as published (the misspelling is the dataset's own).
CATARACT_101_PHASES = [
    "Incision", "Viscous agent injection", "Rhexis", "Hydrodissection", "Phacoemulsificiation",
    "Irrigation and aspiration", "Capsule polishing", "Lens implant setting-up", "Viscous agent removal",
    "Tonifying and antibiotics",
]
# CATARACTS' 21 tool columns, in the challenge's order.
CATARACTS_TOOLS = [
    "biomarker", "Charleux cannula", "hydrodissection cannula", "Rycroft cannula", "viscoelastic cannula",
    "cotton", "capsulorhexis cystotome", "Bonn forceps", "capsulorhexis forceps", "Troutman forceps",
    "needle holder", "irrigation/aspiration handpiece", "phacoemulsifier handpiece", "vitrectomy handpiece",
    "implant injector", "primary incision knife", "secondary incision knife", "micromanipulator",
    "suture needle", "Mendez ring", "Vannas scissors",
]


# ---- taxonomy ---------------------------------------------------------------------------------------
def test_taxonomy_tables_are_consistent():
    assert check_taxonomy() == []
    assert len(SURGERY_TYPES) >= 3


def test_cataract_phases_are_cataract_101s():
    assert [p.name for p in SURGERY_TYPES["cataract"].phases] == CATARACT_101_PHASES
    assert [p.id for p in SURGERY_TYPES["cataract"].phases] == list(range(1, 11))


@pytest.mark.real_data
def test_cataract_phases_match_the_real_phases_csv():
    if not REAL_C101.is_file():
        pytest.skip(f"{REAL_C101} not present (real annotation files are optional)")
    real = pd.read_csv(REAL_C101, sep=";")
    assert real["Meaning"].tolist() == [p.name for p in SURGERY_TYPES["cataract"].phases]


# ---- config errors (through ophclip.config.load_config) --------------------------------------------------
def write_yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "synth.yaml"
    path.write_text(text)
    return path


def test_shipped_presets_load():
    tiny = load_config(SynthConfig, CONFIGS / "synth_tiny.yaml")
    demo = load_config(SynthConfig, CONFIGS / "synth_demo.yaml")
    assert (tiny.n_narrated, tiny.n_silent, tiny.n_eval) == (4, 2, 2)
    assert (demo.n_narrated, demo.n_silent, demo.n_eval, demo.fps) == (90, 30, 12, 8)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path, "n_narated: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(SynthConfig, path)
    assert "n_narated" in str(e.value) and str(path) in str(e.value)


def test_unknown_nested_key(tmp_path):
    with pytest.raises(ConfigError, match="narration.*chatter"):
        load_config(SynthConfig, write_yaml(tmp_path, "narration:\n  chatter: 0.5\n"))


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="fps"):
        load_config(SynthConfig, write_yaml(tmp_path, "fps: fast\n"))
    with pytest.raises(ConfigError, match="duration_s"):
        load_config(SynthConfig, None, ["duration_s=[1, 2, 3]"])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(SynthConfig, CONFIGS / "no_such_synth.yaml")


@pytest.mark.parametrize("override, key", [
    ("surgery_types=[cataract, keratoplasty]", "surgery_types"),
    ("width=95", "width"),
    ("duration_s=[10, 5]", "duration_s"),
    ("eval_kind=maybe", "eval_kind"),
    ("surgery_weights=[1.0]", "surgery_weights"),
])
def test_invalid_values_are_named(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(SynthConfig, CONFIGS / "synth_tiny.yaml", [override])


# ---- determinism -----------------------------------------------------------------------------------
def small_config(**changes) -> SynthConfig:
    base = dict(seed=3, n_narrated=1, n_silent=1, n_eval=0, duration_s=(4.0, 5.0), width=64, height=48, workers=1,
                min_phase_s=0.25)
    base.update(changes)
    return SynthConfig(**base)


def decode_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_same_seed_same_frames_and_annotations(tmp_path):
    cfg = small_config()
    row = dataset_plan(cfg)[0]
    runs = []
    for k in range(3):
        # Churn the heap between runs: an encoder that reads uninitialised memory shows up here
        # (x264's CRF lookahead did, which is why the writer uses a constant quantiser).
        junk = [np.random.default_rng(k).bytes(50_000 * (k + 1)) for _ in range(20)]
        del junk
        runs.append(generate_video(cfg, *row, str(tmp_path / f"run{k}")))
    vid, rel = runs[0]["plan"].video_id, runs[0]["rel"]
    first = decode_frames(tmp_path / "run0" / rel)
    for k in (1, 2):
        assert np.array_equal(first, decode_frames(tmp_path / f"run{k}" / rel))
        assert (tmp_path / "run0" / rel).read_bytes() == (tmp_path / f"run{k}" / rel).read_bytes()
        for name in (f"annotations/tools/{vid}.csv", f"captions/{vid}.srt"):
            assert (tmp_path / "run0" / name).read_bytes() == (tmp_path / f"run{k}" / name).read_bytes()
        assert runs[0]["script"] == runs[k]["script"]


def test_whole_dataset_is_reproducible_with_a_process_pool(tmp_path):
    from data_pipeline.synth import generate_dataset

    cfg = small_config(n_narrated=1, n_silent=1, n_eval=1, workers=2)
    for name in ("a", "b"):
        generate_dataset(cfg, tmp_path / name, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "synth.json":  # holds timings
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_raw_frames_are_deterministic_and_seed_dependent():
    cfg = small_config()
    plan = plan_video(cfg, *dataset_plan(cfg)[1])
    first = render_frames(plan, cfg.nuisance, cfg.seed)
    assert first.shape == (plan.n_frames, cfg.height, cfg.width, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render_frames(plan, cfg.nuisance, cfg.seed))
    other = small_config(seed=4)
    assert not np.array_equal(first[:5], render_frames(plan, other.nuisance, other.seed)[:5])


def test_a_video_does_not_depend_on_the_others():
    """Per-video random streams: adding videos to the dataset leaves existing ones unchanged."""
    one = small_config()
    more = small_config(n_narrated=3)
    p1 = plan_video(one, *dataset_plan(one)[0])
    p2 = plan_video(more, 0, *dataset_plan(one)[0][1:])
    assert [(s.phase_id, s.start, s.end) for s in p1.segments] == [(s.phase_id, s.start, s.end) for s in p2.segments]


# ---- ground truth of the tiny preset ------------------------------------------------------------------
@pytest.fixture(scope="module")
def meta(synth_tiny_dir) -> pd.DataFrame:
    return pd.read_csv(synth_tiny_dir / "metadata.csv", dtype={"video_id": str}, keep_default_na=False)


def test_layout_and_splits(synth_tiny_dir, meta, synth_tiny_config):
    cfg = synth_tiny_config
    for name in ("metadata.csv", "script.parquet", "surgery_types.csv", "splits.csv", "synth.json",
                 "annotations/cataract101/annotations.csv", "annotations/cataract101/phases.csv",
                 "annotations/cataract101/videos.csv"):
        assert (synth_tiny_dir / name).is_file(), name
    assert meta["split"].value_counts().to_dict() == {
        "narrated_pretrain": cfg.n_narrated, "silent_pretrain": cfg.n_silent, "eval": cfg.n_eval}
    assert set(meta["surgery_type"]) == {"cataract", "trabeculectomy", "vitrectomy"}
    assert meta["video_id"].is_unique and meta["c101_id"].is_unique
    assert (meta["title"].str.len() > 20).all() and (meta["description"].str.len() > 40).all()
    splits = pd.read_csv(synth_tiny_dir / "splits.csv", dtype=str)
    types = pd.read_csv(synth_tiny_dir / "surgery_types.csv", dtype=str)
    assert splits.set_index("video_id")["split"].to_dict() == meta.set_index("video_id")["split"].to_dict()
    assert types.set_index("video_id")["surgery_type"].to_dict() == meta.set_index("video_id")["surgery_type"].to_dict()
    for m in meta.itertuples():
        assert cfg.duration_s[0] <= m.duration_s <= cfg.duration_s[1] + 1.0
    # "narrated" must mean narration was placed, even in the shortest video (long tool clauses once crowded it out).
    script = pd.read_parquet(synth_tiny_dir / "script.parquet")
    spoken = set(script.loc[~script["is_chatter"], "video_id"])
    assert set(meta.loc[meta["kind"] == "narrated", "video_id"]) <= spoken


def test_cataract101_files_label_every_frame_without_overlap(synth_tiny_dir, meta):
    c101 = synth_tiny_dir / "annotations" / "cataract101"
    ann = pd.read_csv(c101 / "annotations.csv", sep=";")
    videos = pd.read_csv(c101 / "videos.csv", sep=";").set_index("VideoID")
    phases = pd.read_csv(c101 / "phases.csv", sep=";")
    assert list(ann.columns) == ["VideoID", "FrameNo", "Phase"]
    assert list(videos.columns) == ["Frames", "FPS", "Surgeon", "Experience"]
    assert phases["Phase"].is_unique and phases["Phase"].tolist()[:10] == list(range(1, 11))
    assert phases["Meaning"].tolist()[:10] == CATARACT_101_PHASES
    for m in meta.itertuples():
        rows = ann[ann["VideoID"] == m.c101_id]
        frames = rows["FrameNo"].tolist()
        assert frames[0] == 0, "frame 0 must be labelled (no idle lead-in)"
        assert all(a < b for a, b in zip(frames, frames[1:], strict=False)), "transitions must strictly increase (no overlap)"
        assert frames[-1] < videos.loc[m.c101_id, "Frames"] == m.n_frames
        assert videos.loc[m.c101_id, "FPS"] == m.fps
        allowed = {p.id for p in SURGERY_TYPES[m.surgery_type].phases}
        assert set(rows["Phase"]) <= allowed
        # Phases follow the surgery's order except for the taxonomy's allowed repeats.
        repeats = {(a, b) for a, b, _ in SURGERY_TYPES[m.surgery_type].repeats}
        seq = rows["Phase"].tolist()
        for prev, nxt in zip(seq, seq[1:], strict=False):
            assert nxt > prev or (prev, nxt) in repeats, (m.video_id, seq)


def test_tool_csvs_align_with_frames_and_phases(synth_tiny_dir, meta):
    c101 = synth_tiny_dir / "annotations" / "cataract101"
    ann = pd.read_csv(c101 / "annotations.csv", sep=";")
    for m in meta.itertuples():
        tools = pd.read_csv(synth_tiny_dir / "annotations" / "tools" / f"{m.video_id}.csv")
        assert list(tools.columns[:22]) == ["Frame"] + CATARACTS_TOOLS
        n_decoded = len(decode_frames(synth_tiny_dir / m.path))
        assert len(tools) == m.n_frames == n_decoded
        assert tools["Frame"].tolist() == list(range(m.n_frames))
        values = tools.drop(columns="Frame").to_numpy()
        assert set(np.unique(values)) <= {0, 1}
        # Per-frame phase from the Cataract-101 transitions; a tool is only used in phases that use it.
        rows = ann[ann["VideoID"] == m.c101_id]
        label = np.zeros(m.n_frames, int)
        for start, phase in zip(rows["FrameNo"], rows["Phase"], strict=False):
            label[start:] = phase
        st = SURGERY_TYPES[m.surgery_type]
        for f in range(0, m.n_frames, 3):
            allowed = {u.tool for u in st.phase(label[f]).tools}
            present = set(tools.columns[1:][values[f] == 1])
            assert present <= allowed, (m.video_id, f, present - allowed)
        assert values.sum(1).mean() > 0.5, "most frames show at least one instrument"


def test_mp4_streams(synth_tiny_dir, meta):
    for m in meta.itertuples():
        with av.open(str(synth_tiny_dir / m.path)) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == (m.width, m.height)
            assert v.codec_context.name == "h264" and float(v.average_rate) == m.fps
            if m.kind == "narrated":
                assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
            else:
                assert len(c.streams.audio) == 0, "silent videos carry no audio stream"
                assert not (synth_tiny_dir / "captions" / f"{m.video_id}.srt").exists()


# ---- narration: SRT, script and the audio agree ----------------------------------------------------------
SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+?)\n", re.S)


def parse_srt(path: Path) -> list[tuple[float, float, str]]:
    def secs(h, m, s, ms):
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(secs(*g[1:5]), secs(*g[5:9]), g[9].strip()) for g in SRT_CUE.findall(path.read_text())]


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        chunks = []
        for frame in c.decode(stream):
            assert frame.pts is None or frame.pts >= 0
            chunks.append(frame.to_ndarray().reshape(-1))
        return np.concatenate(chunks).astype(np.float64), stream.rate


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


def test_script_matches_srt(synth_tiny_dir, meta):
    script = pd.read_parquet(synth_tiny_dir / "script.parquet")
    assert list(script.columns) == ["video_id", "start", "end", "text", "phase_id", "is_chatter"]
    narrated = meta[meta["kind"] == "narrated"]
    assert set(script["video_id"]) <= set(narrated["video_id"])
    assert script["is_chatter"].any() and (~script["is_chatter"]).any()
    for m in narrated.itertuples():
        cues = parse_srt(synth_tiny_dir / "captions" / f"{m.video_id}.srt")
        rows = script[script["video_id"] == m.video_id].sort_values("start")
        assert len(cues) == len(rows)
        for (a, b, text), r in zip(cues, rows.itertuples(), strict=False):
            assert text == r.text
            assert abs(a - r.start) <= 0.0005 + 1e-9 and abs(b - r.end) <= 0.0005 + 1e-9
        ends = [c[1] for c in cues]
        starts = [c[0] for c in cues]
        assert all(e <= s for e, s in zip(ends, starts[1:], strict=False)), "cues must not overlap"
        assert all(0 <= s < e <= m.duration_s for s, e, _ in cues)


def test_audio_holds_speech_exactly_where_the_srt_says(synth_tiny_dir, meta):
    total_cues = 0
    for m in meta[meta["kind"] == "narrated"].itertuples():
        audio, sr = decode_audio(synth_tiny_dir / m.path)
        assert abs(len(audio) / sr - m.duration_s) < 0.2
        cues = parse_srt(synth_tiny_dir / "captions" / f"{m.video_id}.srt")
        inside = np.zeros(len(audio), bool)
        for a, b, _ in cues:
            inside[int(a * sr):int(b * sr)] = True
        # Outside: away from every cue by 50 ms, so the AAC filter's ringing does not count.
        pad = int(0.05 * sr)
        near = np.convolve(inside, np.ones(2 * pad + 1), mode="same") > 0
        if not cues:
            continue
        total_cues += len(cues)
        ratio = rms(audio[inside]) / max(rms(audio[~near]), 1e-9)
        assert ratio > 8, f"{m.video_id}: speech/silence RMS ratio {ratio:.1f}"
        for a, b, text in cues:  # every cue is spoken: its window is loud ...
            assert rms(audio[int(a * sr):int(b * sr)]) > 4 * rms(audio[~near]), (m.video_id, text)
            # ... and it starts at its onset: the 100 ms before it is quiet unless another cue ends there
            before = audio[max(0, int((a - 0.1) * sr)):max(0, int((a - 0.03) * sr))]
            if len(before) and not inside[max(0, int((a - 0.1) * sr)):int((a - 0.03) * sr)].any():
                assert rms(before) < 0.25 * rms(audio[int(a * sr):int(b * sr)]), (m.video_id, text)
    assert total_cues >= 4


def test_annotated_tools_are_exactly_the_drawn_ones():
    """With nuisances off, a frame differs from its tool-free rendering iff the plan lists a tool there."""
    from data_pipeline.synth import NuisanceConfig
    from data_pipeline.synth.render import Renderer

    calm = NuisanceConfig(jitter_px=0, illumination=0, light_step_prob=0, blur_prob=0, occlusion_prob=0, specular=0,
                          sensor_noise=0)
    cfg = small_config(n_narrated=3, duration_s=(6.0, 6.0), surgery_weights=[1.0, 1.0, 1.0])
    for row in dataset_plan(cfg)[:3]:
        plan = plan_video(cfg, *row)
        presence = plan.tool_matrix()
        renderer = Renderer(plan, calm, cfg.seed)
        for i in range(plan.n_frames):
            differs = not np.array_equal(renderer.frame(i), renderer.frame(i, draw_tools=False))
            assert differs == bool(presence[i].any()), (plan.surgery, i, presence[i].nonzero())


def test_every_phase_has_paraphrases_with_known_slots():
    from data_pipeline.synth.narration import _SLOT, SYNONYMS, TEMPLATES, fill_template
    from data_pipeline.synth.taxonomy import all_phases

    rng = np.random.default_rng(0)
    for phase in all_phases():
        templates = TEMPLATES[phase.id]
        assert len(templates) >= 3, phase.name
        for t in templates:
            assert set(_SLOT.findall(t)) <= set(SYNONYMS), t
            text = fill_template(t, rng)
            assert "{" not in text and text[0].isupper()
    # Paraphrases vary: 20 fillings of one template give several distinct sentences.
    assert len({fill_template(TEMPLATES[5][0], rng) for _ in range(20)}) >= 5


def test_narration_names_the_tools_in_view_by_their_class_names():
    """Text about a tool is what ties its look to a prompt: named tools must be drawn while the sentence may be spoken."""
    import dataclasses

    from data_pipeline.synth.narration import plan_script, tool_phrase
    from data_pipeline.synth.taxonomy import ALL_TOOLS

    cfg = small_config(n_narrated=6, duration_s=(20.0, 20.0), surgery_weights=[1.0, 1.0, 1.0])
    always = dataclasses.replace(cfg.narration, tool_mention_prob=1.0, unnarrated_phase_prob=0.0)
    never = dataclasses.replace(always, tool_mention_prob=0.0)
    named_any = 0
    for row in dataset_plan(cfg)[:6]:
        plan = plan_video(cfg, *row)
        for s in plan_script(plan, always, np.random.default_rng(0)):
            if s.is_chatter:
                continue
            named = [t for t in ALL_TOOLS if tool_phrase([t]) in s.text]
            drawn = {iv.tool for iv in plan.tools
                     if iv.start / plan.fps < s.latest + 3.0 and iv.end / plan.fps > s.earliest}
            assert set(named) <= drawn, (s.text, drawn)
            named_any += bool(named)
        # Off, no clause is added (long names only: "Kelly punch" is also phase vocabulary).
        assert not any(tool_phrase([t]) in s.text for s in plan_script(plan, never, np.random.default_rng(0))
                       if not s.is_chatter for t in ALL_TOOLS if len(t) > 12)
    assert named_any >= 10


def test_acronyms_are_spelled_for_the_speech_engine_only():
    from data_pipeline.synth.narration import spoken_form

    assert spoken_form("Remove the OVD with the I/A handpiece") == "Remove the O V D with the I and A handpiece"
    assert spoken_form("ILM peeling, then the IOL") == "I L M peeling, then the I O L"
    assert spoken_form("PIPE and PIN stay") == "PIPE and PIN stay"  # whole words only


@pytest.mark.slow
def test_narration_is_intelligible_to_real_asr(synth_tiny_dir, meta):
    """faster-whisper tiny.en (the embedded offline model) recovers most of the script's words."""
    import jiwer
    from faster_whisper import WhisperModel

    from data_pipeline.offline_models import whisper_tiny_en_dir

    model = WhisperModel(str(whisper_tiny_en_dir()), device="cpu", compute_type="int8", cpu_threads=2)

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())

    refs, hyps = [], []
    for m in meta[meta["kind"] == "narrated"].itertuples():
        cues = parse_srt(synth_tiny_dir / "captions" / f"{m.video_id}.srt")
        if not cues:
            continue
        segments, _ = model.transcribe(str(synth_tiny_dir / m.path), language="en", beam_size=1, temperature=0.0,
                                       condition_on_previous_text=False, vad_filter=False)
        refs.append(norm(" ".join(c[2] for c in cues)))
        hyps.append(norm(" ".join(s.text for s in segments)))
    wer = jiwer.wer(" ".join(refs), " ".join(hyps))
    # Medical words in a robot voice defeat a tiny model now and then; most words must still come through.
    assert wer < 0.6, (wer, list(zip(refs, hyps, strict=True)))
