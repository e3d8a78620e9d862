"""Caption import through the whole run: the synthetic set's SRT files instead of ASR, and bad captions."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from data_pipeline.config import PipelineConfig
from data_pipeline.manifests import read_manifest
from data_pipeline.run import run_pipeline


def _cfg(videos, out, **asr) -> PipelineConfig:
    cfg = PipelineConfig(output=str(out))
    cfg.input.videos = str(videos)
    cfg.llm.backend = "none"
    cfg.frames.enabled = False
    cfg.run.progress = False
    for k, v in asr.items():
        setattr(cfg.asr, k, v)
    return cfg


def test_srt_captions_replace_asr(synth_tiny_dir, tmp_path):
    cfg = _cfg(synth_tiny_dir / "metadata.csv", tmp_path, backend="captions")
    cfg.input.captions_dir = str(synth_tiny_dir / "captions")
    info = run_pipeline(cfg)
    assert info["asr_audio_s_this_run"] == 0.0 and info["models"]["asr"] == "captions"
    meta = pd.read_csv(synth_tiny_dir / "metadata.csv").set_index("video_id")
    videos = read_manifest(tmp_path, "videos").set_index("video_id")
    for vid, row in meta.iterrows():
        assert videos.loc[vid, "kind"] == row["kind"], vid
    # segment times are the script's (captions are exact); sources name the SRT file
    script = pd.read_parquet(synth_tiny_dir / "script.parquet").sort_values(["video_id", "start"])
    segs = read_manifest(tmp_path, "segments").sort_values(["video_id", "start"])
    assert len(segs) == len(script)
    assert (segs["start"].to_numpy() - script["start"].to_numpy()).__abs__().max() <= 0.0015  # SRT is in ms
    assert (segs["source"] == segs["video_id"] + ".srt").all()
    # the chatter in the script is what the relevance filter drops (precision/recall on exact text)
    sents = pd.read_parquet(tmp_path / "sentences.parquet").sort_values(["video_id", "start"])
    dropped = sents["status"].to_numpy() != "kept"
    chatter = script["is_chatter"].to_numpy()
    assert len(sents) == len(script)
    tp = (dropped & chatter).sum()
    assert tp >= 1 and tp / max(chatter.sum(), 1) >= 0.5


def test_non_utf8_captions_are_quarantined_and_asr_is_used(media_dir, tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    shutil.copy(media_dir / "videos" / "narr_b.mp4", vids / "narr_b.mp4")
    caps = tmp_path / "caps"
    caps.mkdir()
    (caps / "narr_b.srt").write_bytes("1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9\n".encode("latin-1"))
    cfg = _cfg(vids, tmp_path / "out")
    cfg.input.captions_dir = str(caps)
    info = run_pipeline(cfg)
    q = read_manifest(tmp_path / "out", "quarantine")
    assert list(q["stage"]) == ["captions"] and "not UTF-8" in q["error"].iloc[0] and "narr_b.srt" in q["path"].iloc[0]
    segs = read_manifest(tmp_path / "out", "segments")
    assert segs["source"].str.startswith("faster-whisper").all() and len(segs) >= 1
    assert info["counts"]["videos_narrated"] == 1


@pytest.mark.parametrize(
    "content,needle",
    [
        ("1\n00:00:05,000 --> 00:00:04,000\nreversed\n", "reversed timestamps"),
        ("1\n00:00:01,000 --> 00:00:04,000\na\n\n2\n00:00:02,000 --> 00:00:05,000\nb\n", "before the previous cue ends"),
        ("1\nno timing here\n", "expected a"),
    ],
)
def test_bad_caption_files_are_quarantined_with_captions_backend(media_dir, tmp_path, content, needle):
    vids = tmp_path / "v"
    vids.mkdir()
    shutil.copy(media_dir / "videos" / "noaudio.mp4", vids / "clip.mp4")
    caps = tmp_path / "caps"
    caps.mkdir()
    (caps / "clip.srt").write_text(content)
    cfg = _cfg(vids, tmp_path / "out", backend="captions")
    cfg.input.captions_dir = str(caps)
    info = run_pipeline(cfg)
    q = read_manifest(tmp_path / "out", "quarantine")
    assert len(q) == 1 and needle in q["error"].iloc[0]
    assert info["counts"]["videos_silent"] == 1  # no usable narration: the video joins the silent pool
