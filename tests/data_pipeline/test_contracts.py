"""The dataset-root contract: manifest schemas and the frame cache."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest

from data_pipeline.errors import InputError
from data_pipeline.frame_cache import FrameCache, cache_video, iter_resampled_frames, write_index
from data_pipeline.manifests import SCHEMAS, read_manifest, write_manifest


def write_counter_video(path, n_frames: int, fps: int, size=(64, 48)) -> None:
    """A video whose frame i is uniformly grey at level 8 * i, so decoded frames reveal their index."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            img = np.full((size[1], size[0], 3), 8 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 8))


def test_resampling_picks_the_frame_shown_at_each_output_time(tmp_path):
    video = tmp_path / "counter.mp4"
    write_counter_video(video, n_frames=20, fps=10)
    frames = list(iter_resampled_frames(video, fps=5, short_side=None))
    # 2 s of video at 5 fps: output frame k is shown at k/5 s, which is source frame 2k.
    assert [frame_index(f) for f in frames] == [2 * k for k in range(10)]
    upsampled = list(iter_resampled_frames(video, fps=20, short_side=None))
    assert [frame_index(f) for f in upsampled] == [k // 2 for k in range(40)]


def test_short_side_resize(tmp_path):
    video = tmp_path / "counter.mp4"
    write_counter_video(video, n_frames=4, fps=4, size=(96, 64))
    first = next(iter_resampled_frames(video, fps=4, short_side=32))
    assert first.shape == (32, 48, 3)


def test_cache_round_trip_and_sampling(tmp_path):
    video = tmp_path / "v.mp4"
    write_counter_video(video, n_frames=30, fps=10)
    frames_dir = tmp_path / "root" / "frames"
    array = cache_video(video, frames_dir / "v1.npy", fps=10, short_side=None)
    write_index(frames_dir, [dict(video_id="v1", file="v1.npy", n_frames=len(array), fps=10.0,
                                  height=array.shape[1], width=array.shape[2], source_sha256="x")])
    cache = FrameCache(tmp_path / "root")
    assert "v1" in cache and len(cache) == 1
    idx = cache.indices_between("v1", 1.0, 2.0, 4)
    assert idx[0] == 10 and idx[-1] == 19
    got = cache.get("v1", idx)
    assert [frame_index(f) for f in got] == list(idx)
    with pytest.raises(InputError, match="no entry in the frame cache"):
        cache.frames("absent")


def test_missing_cache_file_is_named(tmp_path):
    frames_dir = tmp_path / "frames"
    write_index(frames_dir, [dict(video_id="v1", file="v1.npy", n_frames=3, fps=1.0, height=2, width=2,
                                  source_sha256="x")])
    with pytest.raises(InputError, match="v1.npy"):
        FrameCache(tmp_path).frames("v1")


def test_corrupt_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="bad.mp4"):
        list(iter_resampled_frames(bad, fps=4, short_side=None))


def test_manifest_schema_round_trip(tmp_path):
    df = pd.DataFrame({
        "clip_id": ["c1"], "video_id": ["v1"], "start": [1], "end": [5.5], "narration": ["cut"],
        "text": ["the surgeon cuts"], "rewrite_model": [None], "extra": [3],
    })
    write_manifest(tmp_path, "clips", df)
    back = read_manifest(tmp_path, "clips")
    assert list(back.columns)[: len(SCHEMAS["clips"])] == list(SCHEMAS["clips"])
    assert back.loc[0, "start"] == 1.0 and back.loc[0, "rewrite_model"] == "" and back.loc[0, "extra"] == 3


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="lacks columns"):
        write_manifest(tmp_path, "clips", pd.DataFrame({"clip_id": ["c"]}))
    with pytest.raises(InputError, match="videos.parquet not found"):
        read_manifest(tmp_path, "videos")
    assert len(read_manifest(tmp_path, "quarantine", required=False)) == 0
    (tmp_path / "segments.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="segments.parquet: cannot read parquet"):
        read_manifest(tmp_path, "segments")
