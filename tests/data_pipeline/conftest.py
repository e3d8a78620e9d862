"""Shared, session-scoped test media for the data-pipeline tests (built once, a few seconds)."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from pipeline_media import NARRATED_A, NARRATED_B, truncate, write_mp4  # noqa: E402


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Videos + a CSV list: 2 narrated, 1 silent-audio, 1 no-audio, 1 empty, 1 truncated,
    1 duplicate, 1 missing; ground truth in ``truth`` attributes via :func:`media_truth`."""
    d = tmp_path_factory.mktemp("media")
    vids = d / "videos"
    vids.mkdir()
    truth = {
        "narr_a": write_mp4(vids / "narr_a.mp4", 16.0, NARRATED_A, seed=1),
        "narr_b": write_mp4(vids / "narr_b.mp4", 9.0, NARRATED_B, seed=2),
        "quiet": write_mp4(vids / "quiet.mp4", 6.0, [], seed=3),
        "noaudio": write_mp4(vids / "noaudio.mp4", 5.0, audio=False, seed=4),
    }
    (vids / "empty.mp4").write_bytes(b"")
    truncate(vids / "narr_b.mp4", vids / "truncated.mp4", keep=0.5)
    shutil.copy(vids / "narr_b.mp4", vids / "zz_dup.mp4")
    rows = [
        ("narr_a", "videos/narr_a.mp4", "Phacoemulsification cataract surgery", "Routine case with trypan blue."),
        ("narr_b", "videos/narr_b.mp4", "Cataract surgery with IOL implantation", ""),
        ("quiet", "videos/quiet.mp4", "", ""),
        ("noaudio", "videos/noaudio.mp4", "", ""),
        ("empty", "videos/empty.mp4", "", ""),
        ("truncated", "videos/truncated.mp4", "", ""),
        ("zz_dup", "videos/zz_dup.mp4", "", ""),
        ("missing", "videos/missing.mp4", "", ""),
    ]
    with open(d / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "path", "title", "description"])
        w.writerows(rows)
    (d / "truth.json").write_text(__import__("json").dumps(truth))
    return d
