"""Caption parsers: known files, malformed input, and hypothesis fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.captions import load_captions, parse_csv, parse_srt, parse_vtt, parse_whisper_json
from data_pipeline.errors import InputError
from data_pipeline.records import Segment
from data_pipeline.writers import get_writer, to_csv, to_json, to_srt, to_vtt

SRT = """1
00:00:01,000 --> 00:00:03,500
The corneal incision is made.

2
00:00:04,250 --> 00:01:02,005
Now the <i>capsulorhexis</i>
with the cystotome.
"""

VTT = """WEBVTT
Kind: captions

NOTE a comment block

intro
00:01.000 --> 00:03.500 align:start position:0%
The corneal incision is made.

01:02:04.250 --> 01:02:05.000
Second cue.
"""


def test_srt_known_file():
    segs = parse_srt(SRT)
    assert [(s.start, s.end) for s in segs] == [(1.0, 3.5), (4.25, 62.005)]
    assert segs[1].text == "Now the capsulorhexis with the cystotome."


def test_vtt_known_file_with_header_note_settings_and_hours():
    segs = parse_vtt(VTT)
    assert [(s.start, s.end, s.text) for s in segs] == [
        (1.0, 3.5, "The corneal incision is made."),
        (3724.25, 3725.0, "Second cue."),
    ]


def test_whisper_json_and_csv():
    js = json.dumps({"text": "x", "segments": [{"id": 0, "start": 0.0, "end": 2.0, "text": " Hello there.",
                                                "avg_logprob": -0.3, "no_speech_prob": 0.01}]})
    (seg,) = parse_whisper_json(js)
    assert (seg.start, seg.end, seg.text, seg.avg_logprob) == (0.0, 2.0, "Hello there.", -0.3)
    segs = parse_csv("start,end,text\n0.5,1.5,\"a, b\"\n2,3,c\n")
    assert [(s.start, s.end, s.text) for s in segs] == [(0.5, 1.5, "a, b"), (2.0, 3.0, "c")]


@pytest.mark.parametrize(
    "parser,text,needle",
    [
        (parse_srt, "1\n00:00:01,000 -> 00:00:02,000\nhi\n", "line 1"),  # wrong arrow
        (parse_srt, "1\n00:00:01,000 --> 00:0x:02,000\nhi\n", "line 2: malformed SRT timing"),
        (parse_vtt, "00:01.000 --> 00:02.000\nhi\n", "must start with 'WEBVTT'"),
        (parse_csv, "begin,finish,words\n1,2,hi\n", "start,end,text"),
        (parse_csv, "start,end,text\n1,two,hi\n", "line 2: start/end must be seconds"),
        (parse_whisper_json, "{\"segments\": [{\"start\": 1}]}", "segments[0] needs"),
        (parse_whisper_json, "{not json", "not valid JSON"),
    ],
)
def test_malformed_captions_name_the_line(parser, text, needle):
    with pytest.raises(InputError, match=None) as e:
        parser(text, source="cap.x")
    assert "cap.x" in str(e.value) and needle in str(e.value)


def test_reversed_timestamps():
    with pytest.raises(InputError, match=r"line 2: reversed timestamps"):
        parse_srt("1\n00:00:05,000 --> 00:00:04,000\nbackwards\n", source="r.srt")


def test_overlapping_timestamps():
    text = "1\n00:00:01,000 --> 00:00:04,000\na\n\n2\n00:00:03,000 --> 00:00:05,000\nb\n"
    with pytest.raises(InputError, match=r"line 6: cue starts at 3.000 s, before the previous cue ends \(4.000 s\)"):
        parse_srt(text, source="o.srt")


def test_non_utf8_captions(tmp_path):
    path = tmp_path / "latin.srt"
    path.write_bytes("1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9 lens\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.srt: captions are not UTF-8 \(invalid byte at offset 35\)"):
        load_captions(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="caption file not found"):
        load_captions(tmp_path / "none.srt")
    (tmp_path / "x.ass").write_text("x")
    with pytest.raises(InputError, match="unknown caption format '.ass'"):
        load_captions(tmp_path / "x.ass")


# -- fuzzing -------------------------------------------------------------------------------
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="<>"),
                min_size=1, max_size=30).map(lambda t: " ".join(t.split())).filter(bool).filter(lambda t: "-->" not in t)


@st.composite
def timelines(draw):
    n = draw(st.integers(0, 6))
    t, segs = 0.0, []
    for _ in range(n):
        start = t + draw(st.integers(0, 5000)) / 1000
        end = start + draw(st.integers(0, 9000)) / 1000
        segs.append(Segment(round(start, 3), round(end, 3), draw(_text)))
        t = end
    return segs


@settings(max_examples=60, deadline=None)
@given(timelines(), st.sampled_from(["srt", "vtt", "json", "csv"]))
def test_roundtrip_through_the_writers(segments, fmt):
    render = {"srt": to_srt, "vtt": to_vtt, "json": to_json, "csv": to_csv}[fmt]
    parse = {"srt": parse_srt, "vtt": parse_vtt, "json": parse_whisper_json, "csv": parse_csv}[fmt]
    got = parse(render(segments))
    assert [(s.start, s.end, s.text) for s in got] == [(s.start, s.end, s.text) for s in segments]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from([parse_srt, parse_vtt, parse_whisper_json, parse_csv]))
def test_arbitrary_text_parses_or_raises_input_error(text, parser):
    try:
        segs = parser(text)
    except InputError:
        return
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.start <= a.end and a.start <= b.start


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["1", "00:00:01,000 --> 00:00:02,000", "00:00:0x --> 1", "text", "", "-->",
                                 "WEBVTT", "NOTE x", "99:99:99,999 --> 00:00:00,000"]), max_size=20))
def test_srt_like_line_soup(lines):
    text = "\n".join(lines)
    for parser in (parse_srt, parse_vtt):
        try:
            parser(text)
        except InputError:
            pass


def test_writer_is_atomic(tmp_path):
    get_writer("srt")([Segment(0.0, 1.0, "a")], tmp_path / "a.srt")
    assert parse_srt((tmp_path / "a.srt").read_text()) [0].text == "a"
    assert not list(tmp_path.glob("*.tmp"))
