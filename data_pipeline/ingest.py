"""Stage 1: find the input videos and probe each one with PyAV.

Inputs are a folder of videos or a CSV list (``path`` plus optional ``video_id``,
``title``, ``description``, ``captions``; paths relative to the CSV's folder), such
as the synthetic set's ``metadata.csv``. :func:`probe_video` reads the container and
demuxes every packet (:func:`ophbase.video.probe_video` with ``scan=True``; no decoding,
so it is cheap) to catch empty, corrupt and truncated files; a bad file raises
:class:`InputError`, which the run turns into a ``quarantine.parquet`` row before
carrying on with the rest.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ophbase.errors import DataError
from ophbase.io import sha256_file
from ophbase.video import probe_video as probe_container

from .config import InputConfig
from .errors import InputError

logger = logging.getLogger(__name__)

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class VideoInput:
    video_id: str
    path: str  # absolute
    title: str = ""
    description: str = ""
    captions: str = ""  # absolute path of a caption file named in the list, or ""


@dataclass
class Probe:
    sha256: str
    duration_s: float
    fps: float
    width: int
    height: int
    has_audio: bool
    n_video_packets: int

    def to_dict(self) -> dict:
        return asdict(self)


def safe_video_id(name: str) -> str:
    return _ID_UNSAFE.sub("_", name).strip("_") or "video"


def list_inputs(cfg: InputConfig) -> tuple[list[VideoInput], list[dict]]:
    """The videos to process and the quarantine rows for list entries that cannot be used."""
    if not cfg.videos:
        raise InputError("input.videos is empty; set it to a folder of videos or a CSV list")
    src = Path(cfg.videos)
    if src.is_dir():
        exts = {e.lower() for e in cfg.extensions}
        paths = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        videos, quarantine, seen = [], [], set()
        for p in paths:
            vid = safe_video_id(p.stem)
            if vid in seen:
                quarantine.append({"path": str(p), "stage": "ingest", "error": f"{p}: video id {vid!r} is used by another file"})
                continue
            seen.add(vid)
            videos.append(VideoInput(vid, str(p.resolve())))
        return videos, quarantine
    if src.is_file() and src.suffix.lower() == ".csv":
        return _read_list(src)
    raise InputError(f"input.videos = {src}: not a folder or a .csv list (does it exist?)")


def _read_list(csv_path: Path) -> tuple[list[VideoInput], list[dict]]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{csv_path}: not UTF-8 (invalid byte at offset {e.start}); re-encode the list") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise InputError(f"{csv_path}: line 1: a video list needs a 'path' column, got {reader.fieldnames}")
    videos, quarantine, seen = [], [], set()
    for row in reader:
        line = reader.line_num
        rel = (row.get("path") or "").strip()
        if not rel:
            quarantine.append({"path": str(csv_path), "stage": "ingest", "error": f"{csv_path}: line {line}: empty path"})
            continue
        path = (csv_path.parent / rel).resolve()
        vid = safe_video_id((row.get("video_id") or "").strip() or Path(rel).stem)
        if not path.is_file():
            quarantine.append({
                "path": str(path), "stage": "ingest",
                "error": f"{csv_path}: line {line}: listed video {rel!r} not found at {path}; fix the path or remove the row",
            })
            continue
        if vid in seen:
            quarantine.append({
                "path": str(path), "stage": "ingest",
                "error": f"{csv_path}: line {line}: video_id {vid!r} is listed twice; ids must be unique",
            })
            continue
        seen.add(vid)
        caps = (row.get("captions") or "").strip()
        videos.append(VideoInput(
            vid, str(path), (row.get("title") or "").strip(), (row.get("description") or "").strip(),
            str((csv_path.parent / caps).resolve()) if caps else "",
        ))
    return videos, quarantine


def probe_video(path: str | Path) -> Probe:
    """Duration, fps, size, audio presence and sha256; raises InputError for unusable files.

    The container is demuxed packet by packet (``scan=True``) so empty, corrupt and
    truncated files are caught here, before any stage trusts them.
    """
    try:
        info = probe_container(path, scan=True)
    except DataError as e:  # the run quarantines InputErrors and carries on with the other videos
        raise InputError(str(e)) from None
    return Probe(sha256_file(path), info.duration_s, info.fps, info.width, info.height, info.has_audio, info.n_frames)
