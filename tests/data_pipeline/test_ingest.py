"""Listing and probing inputs: folders, CSV lists and broken files."""

from __future__ import annotations

import hashlib

import pytest

from data_pipeline.config import InputConfig
from data_pipeline.errors import InputError
from data_pipeline.ingest import list_inputs, probe_video


def test_probe_matches_what_was_written(media_dir):
    path = media_dir / "videos" / "narr_a.mp4"
    p = probe_video(path)
    assert p.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (p.fps, p.width, p.height, p.has_audio, p.n_video_packets) == (8.0, 64, 48, True, 128)
    assert p.duration_s == pytest.approx(16.0, abs=0.1)
    assert probe_video(media_dir / "videos" / "noaudio.mp4").has_audio is False


@pytest.mark.parametrize("name,needle", [("empty.mp4", "empty file (0 bytes)"), ("truncated.mp4", "truncated")])
def test_broken_files_raise_named_errors(media_dir, name, needle):
    with pytest.raises(InputError) as e:
        probe_video(media_dir / "videos" / name)
    assert name in str(e.value) and needle in str(e.value)


def test_truncated_with_moov_first_is_caught_by_demuxing(media_dir, tmp_path):
    """faststart mp4 (index first): the container opens, but the packets stop early."""
    import av

    src = media_dir / "videos" / "narr_a.mp4"
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.mp4: (truncated|demuxing failed|not a readable)"):
        probe_video(cut)


def test_folder_listing(media_dir):
    videos, rejected = list_inputs(InputConfig(videos=str(media_dir / "videos")))
    assert [v.video_id for v in videos] == ["empty", "narr_a", "narr_b", "noaudio", "quiet", "truncated", "zz_dup"]
    assert rejected == []


def test_csv_list_errors(tmp_path):
    (tmp_path / "nopath.csv").write_text("video_id,file\na,b.mp4\n")
    with pytest.raises(InputError, match="nopath.csv: line 1: a video list needs a 'path' column"):
        list_inputs(InputConfig(videos=str(tmp_path / "nopath.csv")))
    (tmp_path / "latin.csv").write_bytes("path,title\nv.mp4,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin.csv: not UTF-8"):
        list_inputs(InputConfig(videos=str(tmp_path / "latin.csv")))
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "twice.csv").write_text("video_id,path\na,v.mp4\na,v.mp4\nb,gone.mp4\n")
    videos, rejected = list_inputs(InputConfig(videos=str(tmp_path / "twice.csv")))
    assert [v.video_id for v in videos] == ["a"]
    assert ["listed twice" in r["error"] for r in rejected] == [True, False]
    assert "line 4: listed video 'gone.mp4' not found" in rejected[1]["error"]
