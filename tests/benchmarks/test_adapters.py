"""Benchmark adapters: native formats -> per-frame labels, checked against independent computations."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from ophclip.datasets import (
    ArraySource,
    FrameFolderSource,
    check_video_frame_counts,
    load_cataract1k,
    load_cataract21,
    load_cataract101,
    load_cataracts_steps,
    load_cataracts_tools,
    load_segment_folder,
    load_synthetic,
    sample_frame_indices,
)
from ophclip.datasets.cataracts import STEP_NAMES, TOOL_NAMES
from ophclip.datasets.generic import ImageListSource, load_image_list
from ophclip.datasets.ophnet import load_ophnet_phases, load_ophnet_surgery
from ophclip.errors import DataError


def write_video(path: Path, n_frames: int, fps: int = 25, size: int = 32) -> Path:
    """A small H.264 mp4 whose frame i is filled with gray level 8 * i (mod 256)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            img = np.full((size, size, 3), (8 * i) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# --------------------------------------------------------------------------- Cataract-101


def transition_rule_by_loop(rows: list[tuple[int, int]], n_frames: int) -> list[int]:
    """Reference: walk every frame, take the last transition at or before it (0 = idle)."""
    out = []
    for f in range(n_frames):
        phase = 0
        for start, p in rows:
            if start <= f:
                phase = p
        out.append(phase)
    return out


def test_cataract101_fixture_follows_the_transition_rule(fixtures_dir):
    labels = load_cataract101(fixtures_dir / "cataract101")
    assert labels.class_names == ["Idle", "Incision", "Viscous agent injection", "Rhexis"]
    assert labels.video_ids == ["101", "102", "103"]
    expected = {
        "101": transition_rule_by_loop([(10, 1), (30, 2), (70, 3)], 100),
        "102": transition_rule_by_loop([(0, 1), (20, 3)], 60),
        "103": transition_rule_by_loop([(5, 2)], 40),
    }
    for vid, ref in expected.items():
        assert labels.labels[vid].tolist() == ref
    table = labels.frame_table(fps=5.0)  # 25 fps -> every 5th frame
    v101 = table[table.video_id == "101"]
    assert v101.frame_index.tolist() == list(range(0, 100, 5))
    assert np.allclose(v101.time_s, np.arange(0, 100, 5) / 25)
    assert v101.label.tolist() == [expected["101"][i] for i in range(0, 100, 5)]


@pytest.mark.real_data
def test_cataract101_real_files_reproduce_published_counts(real_cataract101):
    labels = load_cataract101(real_cataract101)
    assert len(labels.video_ids) == 101
    assert int(labels.videos.n_frames.sum()) == 1_263_116
    assert sum(len(v) for v in labels.labels.values()) == 1_263_116
    # Independent per-phase counts: plain pandas on the raw files, the rule as differences of frame numbers.
    ann = pd.read_csv(real_cataract101 / "annotations.csv", sep=";")
    vids = pd.read_csv(real_cataract101 / "videos.csv", sep=";").set_index("VideoID")
    counts: dict[int, int] = {}
    for vid, g in ann.groupby("VideoID"):
        g = g.sort_values("FrameNo")
        ends = list(g.FrameNo.iloc[1:]) + [int(vids.loc[vid, "Frames"])]
        counts[0] = counts.get(0, 0) + int(g.FrameNo.iloc[0])
        for start, end, phase in zip(g.FrameNo, ends, g.Phase, strict=True):
            counts[phase] = counts.get(phase, 0) + int(end - start)
    names = pd.read_csv(real_cataract101 / "phases.csv", sep=";").set_index("Phase")["Meaning"]
    expected = {"Idle": counts[0], **{names[p]: counts[p] for p in sorted(names.index)}}
    assert labels.class_counts() == expected
    assert sum(expected.values()) == 1_263_116
    assert "Phacoemulsificiation" in labels.class_names  # the dataset's own spelling survives


# --------------------------------------------------------------------------- OphNet


@pytest.mark.real_data
def test_ophnet_real_files_reproduce_published_counts(real_ophnet):
    seg_file = real_ophnet / "OphNet2024_loca_challenge.csv"
    assert seg_file.read_bytes()[:3] == b"\xef\xbb\xbf" and b"\r\n" in seg_file.read_bytes()[:200]
    phases = load_ophnet_phases(seg_file, level="phase")
    assert phases.videos.groupby("split").size().to_dict() == {"train": 445, "val": 144, "test": 154}
    assert len(phases.class_names) == 52
    operations = load_ophnet_phases(seg_file, level="operation")
    assert len(operations.class_names) == 107
    test_only = load_ophnet_phases(seg_file, split="test")
    assert len(test_only.video_ids) == 154
    surgery = load_ophnet_surgery(real_ophnet / "OphNet2024_surgery.csv", seg_file, split="test")
    assert len(surgery.video_ids) == 154 and surgery.multi_label
    # Independent parse of the multi-label column with the csv module.
    import csv

    with open(real_ophnet / "OphNet2024_surgery.csv", encoding="utf-8-sig", newline="") as f:
        raw = {r["video_id"]: sorted({int(x) for x in r["surgery"].split(",")}) for r in csv.DictReader(f)}
    for row, vid in enumerate(surgery.video_ids):
        got = [int(surgery.class_names[k].split()[-1]) for k in np.nonzero(surgery.targets[row])[0]]
        assert got == raw[vid]


def test_ophnet_fixture_with_bom_and_crlf(fixtures_dir):
    seg = fixtures_dir / "ophnet" / "OphNet2024_loca_challenge.csv"
    labels = load_ophnet_phases(seg, fps=2.0, class_names_file=fixtures_dir / "ophnet" / "phase_names.csv")
    assert labels.class_names == ["phase zero", "capsulorhexis", "phacoemulsification", "lens implantation"]
    assert labels.video_ids == ["case_0002", "case_0010", "case_0031"]
    # Brute force: frame k at k/2 s takes the segment with start <= t < end; gaps are -1.
    segs = {"case_0002": [(0, 10, 3), (11.33, 15.23, 6), (15.23, 22.14, 0)], "case_0010": [(2.5, 6, 6), (6, 9.5, 7)],
            "case_0031": [(0, 4, 3)]}
    name_of = {0: "phase zero", 3: "capsulorhexis", 6: "phacoemulsification", 7: "lens implantation"}
    for vid, rows in segs.items():
        n = int(np.ceil(max(e for _, e, _ in rows) * 2))
        ref = []
        for k in range(n):
            t = k / 2
            hit = [name_of[p] for s, e, p in rows if s <= t < e]
            ref.append(hit[-1] if hit else None)
        got = [labels.class_names[x] if x >= 0 else None for x in labels.labels[vid]]
        assert got == ref, vid
    surgery = load_ophnet_surgery(fixtures_dir / "ophnet" / "OphNet2024_surgery.csv", seg)
    assert surgery.class_names == ["surgery 1", "surgery 13", "surgery 14", "surgery 28"]
    assert surgery.targets.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    assert list(surgery.videos.split) == ["train", "val", "test"]


def test_ophnet_names_file_must_cover_every_id(fixtures_dir, tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("id,name\n0,a\n3,b\n")
    with pytest.raises(DataError, match=r"names\.csv.*no name for phase id\(s\) \[6, 7\]"):
        load_ophnet_phases(fixtures_dir / "ophnet" / "OphNet2024_loca_challenge.csv", class_names_file=names)


# --------------------------------------------------------------------------- CATARACTS, Cataract-1K, Cataract-21, generic


def test_cataracts_steps_and_tools_fixture(fixtures_dir):
    steps = load_cataracts_steps(fixtures_dir / "cataracts" / "steps")
    assert steps.class_names == STEP_NAMES and len(STEP_NAMES) == 19
    assert steps.labels["train01"].tolist() == [0, 0, 3, 3, 3, 4, 4, 5, 5, 5, 0, 0]  # Frame 1 -> index 0
    raw = pd.read_csv(fixtures_dir / "cataracts" / "tools" / "train01.csv")
    for half_as, value in (("positive", 1), ("negative", 0), ("ignore", -1)):
        tools = load_cataracts_tools(fixtures_dir / "cataracts" / "tools", half_as=half_as)
        assert tools.class_names == TOOL_NAMES and len(TOOL_NAMES) == 21
        expected = raw[TOOL_NAMES].to_numpy().copy()
        expected[expected == 0.5] = value
        assert np.array_equal(tools.labels["train01"], expected.astype(np.int8))
    assert tools.labels["train01"][5, TOOL_NAMES.index("Viscoelastic Cannula")] == -1


def test_cataract1k_fixture_gaps_are_idle(fixtures_dir):
    labels = load_cataract1k(fixtures_dir / "cataract1k")
    assert len(labels.class_names) == 13 and "Capsule Pulishing" in labels.class_names
    ref = ["Idle"] * 3 + ["Incision"] * 7 + ["Idle"] * 5 + ["Capsulorhexis"] * 10 + ["Capsule Pulishing"] * 5
    assert [labels.class_names[x] for x in labels.labels["case_0007"]] == ref


def test_cataract21_fixture(fixtures_dir):
    labels = load_cataract21(fixtures_dir / "cataract21")
    got = [labels.class_names[x] for x in labels.labels["video01"]]
    assert got == ["not_initialized"] * 3 + ["Incision"] * 4 + ["Rhexis"] * 3


def test_generic_segments_and_image_list(fixtures_dir, tmp_path):
    labels = load_segment_folder(fixtures_dir / "generic" / "segments", fps=2.0)
    assert labels.class_names == ["idle", "incision", "phaco"]
    names = labels.class_names
    a = [names[x] if x >= 0 else None for x in labels.labels["vidA"]]
    assert a == ["incision"] * 5 + [None] + ["phaco"] * 4  # 0-2.5 s, gap 2.5-3 s, 3-5 s at 2 fps
    from PIL import Image

    rows = ["path,label"]
    for vid in ("v1", "v2"):
        (tmp_path / vid).mkdir()
        for i in (10, 2, 1):  # natural order 1, 2, 10
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / vid / f"f{i}.png")
            rows.append(f"{vid}/f{i}.png,{'a' if i < 10 else 'b'}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    img_labels, files = load_image_list(tmp_path / "list.csv")
    assert img_labels.labels["v1"].tolist() == [0, 0, 1]
    chunks = list(ImageListSource(files).iter_frames("v1", np.arange(3), 1.0, 2))
    assert [c[1][:, 0, 0, 0].tolist() for c in chunks] == [[1, 2], [10]]


# --------------------------------------------------------------------------- frames


def test_sample_frame_indices_matches_the_decoder_rule():
    assert sample_frame_indices(10, 25.0, None).tolist() == list(range(10))
    assert sample_frame_indices(100, 25.0, 1.0).tolist() == [0, 25, 50, 75]
    assert sample_frame_indices(101, 25.0, 1.0).tolist() == [0, 25, 50, 75, 100]
    # 8 fps video at 3 fps: frame k shows floor(k * 8 / 3).
    assert sample_frame_indices(16, 8.0, 3.0).tolist() == [int(np.floor(k * 8 / 3 + 1e-9)) for k in range(6)]


def test_video_file_source_decodes_the_annotated_frames(fixtures_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "case_101.mp4", 100)
    labels = load_cataract101(fixtures_dir / "cataract101", video_dir=videos)
    assert labels.video("101")["source"].endswith("case_101.mp4")
    from ophclip.datasets import VideoFileSource

    source = VideoFileSource({"101": videos / "case_101.mp4"})
    for fps in (5.0, 3.0):  # 3 fps: native steps alternate 8 and 9 frames
        idx = labels.sample_indices("101", fps)
        got_pos, got_gray = [], []
        for pos, frames in source.iter_frames("101", idx, 25.0, 8):
            assert len(pos) <= 8
            got_pos += pos.tolist()
            got_gray += frames[:, 16, 16, 0].astype(int).tolist()
        assert got_pos == list(range(len(idx)))
        # Frame i was painted 8*i; H.264 at this quality keeps flat gray within a few levels.
        assert np.allclose(got_gray, [(8 * i) % 256 for i in idx], atol=6), fps


def test_frame_folder_and_array_sources(tmp_path):
    from PIL import Image

    (tmp_path / "vid").mkdir()
    for i in range(0, 10):
        Image.fromarray(np.full((4, 4, 3), 20 * i, np.uint8)).save(tmp_path / "vid" / f"frame_{i}.png")
    folder = FrameFolderSource(tmp_path, stride=5)  # every 5th native frame was extracted
    idx = np.array([0, 5, 10, 45, 60])
    chunks = list(folder.iter_frames("vid", idx, 25.0, 10))
    assert chunks[0][0].tolist() == [0, 1, 2, 3]  # native 60 -> file 12 does not exist: not yielded
    assert chunks[0][1][:, 0, 0, 0].tolist() == [0, 20, 40, 180]
    arr = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1).repeat(3, axis=3)
    chunks = list(ArraySource({"v": arr}).iter_frames("v", np.array([0, 4, 8, 20]), 1.0, 2))
    assert [c[1][:, 0, 0, 0].tolist() for c in chunks] == [[0, 4], [8]]


# --------------------------------------------------------------------------- synthetic


def test_synthetic_set_through_the_real_adapters(eval_synth_dir):
    from data_pipeline.synth.config import SynthConfig
    from data_pipeline.synth.plan import plan_video
    from data_pipeline.synth.taxonomy import ALL_TOOLS

    bench = load_synthetic(eval_synth_dir, split="eval")
    meta = pd.read_csv(eval_synth_dir / "metadata.csv")
    eval_meta = meta[meta.split == "eval"]
    assert bench.phases.video_ids == list(eval_meta.video_id)
    assert bench.tools.class_names == list(ALL_TOOLS)
    assert bench.surgery.class_names == sorted(set(meta.surgery_type))
    check_video_frame_counts(bench.phases, tolerance=0)  # the mp4s agree with the annotations
    # Generator ground truth: re-plan each video from the recorded config and compare frame by frame.
    import json

    cfg_dict = json.loads((eval_synth_dir / "synth.json").read_text())["config"]
    from ophclip.config import from_dict

    cfg = from_dict(SynthConfig, cfg_dict)
    for row in eval_meta.itertuples():
        plan = plan_video(cfg, int(row.video_id.removeprefix("synth")), row.split, row.kind, row.surgery_type)
        truth_names = [dict(_phase_names(plan))[int(p)] for p in plan.phase_per_frame()]
        got = [bench.phases.class_names[k] for k in bench.phases.labels[row.video_id]]
        assert got == truth_names, row.video_id
        assert np.array_equal(bench.tools.labels[row.video_id], plan.tool_matrix().astype(np.int8))
        # Known surgery type: the video's phases all lie in its group's classes, and Idle is in every group.
        assert bench.phases.video(row.video_id)["group"] == row.surgery_type
        assert set(got) <= set(bench.phases.group_classes[row.surgery_type])
        k = bench.surgery.video_ids.index(row.video_id)
        assert bench.surgery.class_names[int(bench.surgery.targets[k].argmax())] == row.surgery_type
    assert all("Idle" in classes for classes in bench.phases.group_classes.values())
    # Every evaluated frame decodes.
    vid = bench.phases.video_ids[0]
    idx = bench.phases.sample_indices(vid, None)
    n = sum(len(p) for p, _ in bench.source.iter_frames(vid, idx, float(bench.phases.video(vid)["fps"]), 64))
    assert n == len(idx) == int(eval_meta.iloc[0].n_frames)


def _phase_names(plan):
    from data_pipeline.synth.taxonomy import SURGERY_TYPES

    return [(p.id, p.name) for st in SURGERY_TYPES.values() for p in st.phases]


# --------------------------------------------------------------------------- bad input


def _copy_c101(fixtures_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "c101"
    shutil.copytree(fixtures_dir / "cataract101", root)
    return root


def test_missing_annotation_files_are_named(fixtures_dir, tmp_path):
    root = _copy_c101(fixtures_dir, tmp_path)
    (root / "annotations.csv").unlink()
    with pytest.raises(DataError, match=r"annotations\.csv: Cataract-101 annotations\.csv not found"):
        load_cataract101(root)
    with pytest.raises(DataError, match=r"nowhere.*folder not found"):
        load_cataracts_steps(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"absent\.csv: OphNet segment file not found"):
        load_ophnet_phases(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"synth0009\.csv: tool annotation file not found"):
        load_cataracts_tools(fixtures_dir / "cataracts" / "tools", video_ids=["synth0009"], frame_base=0)


def test_unknown_labels_name_file_and_line(fixtures_dir, tmp_path):
    root = _copy_c101(fixtures_dir, tmp_path)
    (root / "annotations.csv").write_text("VideoID;FrameNo;Phase\n101;10;1\n101;30;9\n")
    with pytest.raises(DataError, match=r"annotations\.csv: line 3: unknown phase id 9"):
        load_cataract101(root)
    c21 = tmp_path / "c21"
    c21.mkdir()
    (c21 / "v.csv").write_text("frame,label\n0,Incision\n1,Incisoin\n")
    with pytest.raises(DataError, match=r"v\.csv: line 3: unknown label 'Incisoin'"):
        load_cataract21(c21)
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "t.csv").write_text("Frame,Steps\n1,0\n2,19\n")
    with pytest.raises(DataError, match=r"t\.csv: line 3: unknown label '19'"):
        load_cataracts_steps(steps)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "t.csv").write_text("Frame,Cotton\n1,0\n2,0.7\n")
    with pytest.raises(DataError, match=r"t\.csv: line 3: tool 'Cotton' = '0\.7'; expected 0, 0\.5 or 1"):
        load_cataracts_tools(tools)
    c1k = tmp_path / "c1k"
    c1k.mkdir()
    (c1k / "case_1_annotations_phases.csv").write_text("caseId,comment,frame,endFrame,sec,endSec\n1,Phaco,0,5,0,1\n")
    with pytest.raises(DataError, match=r"case_1_annotations_phases\.csv: line 2: unknown label 'Phaco'"):
        load_cataract1k(c1k)


def test_frames_past_the_end_are_named(fixtures_dir, tmp_path):
    root = _copy_c101(fixtures_dir, tmp_path)
    (root / "annotations.csv").write_text("VideoID;FrameNo;Phase\n101;10;1\n102;0;1\n102;60;2\n103;5;2\n")
    with pytest.raises(DataError, match=r"annotations\.csv: line 4: FrameNo 60 is past the end of video '102', which has 60 frames"):
        load_cataract101(root)
    # A per-frame CSV longer than its video.
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "train01.mp4", 8)
    with pytest.raises(DataError, match=r"train01\.csv: line 13: frame 11 is past the end of video 'train01'"):
        load_cataracts_steps(fixtures_dir / "cataracts" / "steps", video_dir=videos)


def test_video_whose_frame_count_disagrees(fixtures_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "case_101.mp4", 100)
    write_video(videos / "case_102.mp4", 45)  # videos.csv says 60
    labels = load_cataract101(fixtures_dir / "cataract101", video_dir=videos)
    with pytest.raises(DataError, match=r"case_102\.mp4: video '102' has 45 frames but its annotations .*describe 60"):
        check_video_frame_counts(labels)
    write_video(videos / "train01.mp4", 30)  # steps annotate 12
    with pytest.raises(DataError, match=r"train01\.mp4: video 'train01' has 30 frames but .*train01\.csv annotates 12"):
        load_cataracts_steps(fixtures_dir / "cataracts" / "steps", video_dir=videos)


def test_empty_videos_are_named(fixtures_dir, tmp_path):
    root = _copy_c101(fixtures_dir, tmp_path)
    (root / "videos.csv").write_text("VideoID;Frames;FPS;Surgeon;Experience\n101;100;25;1;1\n102;0;25;1;1\n")
    with pytest.raises(DataError, match=r"videos\.csv: line 3: video 102 is empty"):
        load_cataract101(root)
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "t.csv").write_text("Frame,Steps\n")
    with pytest.raises(DataError, match=r"t\.csv: video 't' is empty"):
        load_cataracts_steps(steps)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "train01.mp4").write_bytes(b"")  # an encoder that never received a frame leaves this
    with pytest.raises(DataError, match=r"train01\.mp4: empty file \(0 bytes\)"):
        load_cataracts_steps(fixtures_dir / "cataracts" / "steps", video_dir=videos)
    with pytest.raises(DataError, match=r"video 'v' is empty"):
        list(ArraySource({"v": np.zeros((0, 4, 4, 3), np.uint8)}).iter_frames("v", np.arange(2), 1.0, 2))
