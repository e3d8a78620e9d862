"""Hypothesis fuzzing of every annotation parser: any bytes give labels or a DataError naming the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ophclip.datasets import cataract1k, cataract21, cataract101, cataracts, generic, ophnet
from ophclip.errors import DataError

# (parser, header the parser expects, separator): fuzzed bodies start from a valid header
# half of the time, so the row-level checks are reached, not only the header check.
PARSERS = [
    (cataract101.read_transitions, "VideoID;FrameNo;Phase", ";"),
    (cataract101.read_phase_names, "Phase;Meaning", ";"),
    (cataract101.read_video_table, "VideoID;Frames;FPS;Surgeon;Experience", ";"),
    (cataracts.read_step_csv, "Frame,Steps", ","),
    (cataracts.read_tool_csv, "Frame,Cotton,Bonn Forceps", ","),
    (lambda p: cataract21.read_frame_label_csv(p, cataract21.PHASE_NAMES), "frame,label", ","),
    (cataract1k.read_phase_segments, "caseId,comment,frame,endFrame,sec,endSec", ","),
    (ophnet.read_segments, "video_id,start,end,split,surgery_id,phase_id,operation_id", ","),
    (ophnet.read_surgery_labels, "video_id,surgery", ","),
    (ophnet.read_class_names, "id,name", ","),
    (generic.read_segment_csv, "start,end,label", ","),
]

cell = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "0.5", "1", "train", "Incision", "not_initialized", '"1,13"', "\ufeff", " 3 ", "x;y"]),
    st.text(max_size=8),
)


@st.composite
def bodies(draw, header: str, sep: str) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    n_cols = header.count(sep) + 1
    rows = draw(st.lists(st.lists(cell, min_size=n_cols - 1, max_size=n_cols + 1), max_size=6))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    text = bom + header + newline + newline.join(sep.join(r) for r in rows) + newline
    return text.encode("utf-8", errors="surrogatepass") if draw(st.booleans()) else text.encode("utf-8", "replace")


@pytest.mark.parametrize("parser,header,sep", PARSERS, ids=[h.split(sep)[0] + "/" + h.split(sep)[-1] for _, h, sep in PARSERS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parser_never_crashes(parser, header, sep, data):
    body = data.draw(bodies(header, sep))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.csv"
        path.write_bytes(body)
        try:
            parser(path)
        except DataError as e:
            assert "fuzz.csv" in str(e) or "half_as" in str(e)


def _c101(d: Path, body: bytes):
    (d / "phases.csv").write_text("Phase;Meaning\n1;Incision\n2;Rhexis\n")
    (d / "videos.csv").write_text("VideoID;Frames;FPS;Surgeon;Experience\n1;100;25;1;1\n2;50;25;1;1\n")
    (d / "annotations.csv").write_bytes(body)
    return cataract101.load_cataract101(d)


def _in_folder(name: str, loader):
    def run(d: Path, body: bytes):
        sub = d / "ann"
        sub.mkdir()
        (sub / name).write_bytes(body)
        return loader(sub)

    return run


def _ophnet(d: Path, body: bytes):
    (d / "fuzz.csv").write_bytes(body)
    return ophnet.load_ophnet_phases(d / "fuzz.csv", fps=1.0)


# Whole loaders, so checks across rows (ordering, ranges, lengths, painting) are fuzzed too.
LOADERS = [
    (_c101, "VideoID;FrameNo;Phase", ";"),
    (_in_folder("fuzz.csv", cataracts.load_cataracts_steps), "Frame,Steps", ","),
    (_in_folder("fuzz.csv", cataracts.load_cataracts_tools), "Frame,Cotton,Bonn Forceps", ","),
    (_in_folder("fuzz.csv", cataract21.load_cataract21), "frame,label", ","),
    (_in_folder("case_1_annotations_phases.csv", cataract1k.load_cataract1k), "caseId,comment,frame,endFrame,sec,endSec", ","),
    (_in_folder("fuzz.csv", generic.load_segment_folder), "start,end,label", ","),
    (_ophnet, "video_id,start,end,split,surgery_id,phase_id,operation_id", ","),
]


@pytest.mark.parametrize("loader,header,sep", LOADERS, ids=["c101", "steps", "tools", "c21", "c1k", "generic", "ophnet"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_loader_never_crashes(loader, header, sep, data):
    body = data.draw(bodies(header, sep))
    with tempfile.TemporaryDirectory() as d:
        try:
            labels = loader(Path(d), body)
        except DataError as e:
            assert d in str(e) or "fuzz" in str(e) or "ann" in str(e)
        else:
            for lab in labels.labels.values():
                assert len(lab) > 0
