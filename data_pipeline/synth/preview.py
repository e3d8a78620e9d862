"""Looking at a synthetic dataset: a contact sheet of frames per phase and phase timelines.

Both read only the files of the dataset layout (mp4s decoded with PyAV, the
Cataract-101 annotation files, script.parquet), so they also check that those files
say what the generator meant. Figures are built with matplotlib's object API (``Figure``),
not pyplot, so drawing them never switches the process's backend and works headless.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ophbase.io import atomic_write_bytes
from ophbase.video import open_video

from ..errors import InputError
from .taxonomy import SURGERY_TYPES

logger = logging.getLogger(__name__)


def read_phase_segments(synth_dir: str | Path) -> pd.DataFrame:
    """Phase segments per video from the Cataract-101 files: video_id, phase_id, start, end (frames, end exclusive)."""
    synth_dir = Path(synth_dir)
    c101 = synth_dir / "annotations" / "cataract101"
    for name in ("annotations.csv", "videos.csv"):
        if not (c101 / name).is_file():
            raise InputError(f"{c101 / name} not found: {synth_dir} is not a synthetic dataset (run `ophclip synth`)")
    ann = pd.read_csv(c101 / "annotations.csv", sep=";")
    frames = pd.read_csv(c101 / "videos.csv", sep=";").set_index("VideoID")["Frames"]
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": "string"}, keep_default_na=False)
    id_of = dict(zip(meta["c101_id"], meta["video_id"], strict=False))
    rows = []
    for vid, g in ann.groupby("VideoID", sort=False):
        starts = g["FrameNo"].tolist()
        ends = starts[1:] + [int(frames[vid])]
        rows += [dict(video_id=id_of[vid], phase_id=int(p), start=int(s), end=int(e))
                 for p, s, e in zip(g["Phase"], starts, ends, strict=False)]
    return pd.DataFrame(rows)


def read_frames(path: str | Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Decoded RGB frames at the given 0-based frame indices."""
    wanted = set(indices)
    out: dict[int, np.ndarray] = {}
    with open_video(path) as (container, stream):
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    return out


def _phase_names() -> dict[int, str]:
    return {p.id: p.name for s in SURGERY_TYPES.values() for p in s.phases}


def _save(fig, out_png: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)


def contact_sheet(synth_dir: str | Path, out_png: str | Path, per_phase: int = 5) -> Path:
    """One row per phase (every phase in the dataset), one column per video: the middle frame of the phase."""
    synth_dir = Path(synth_dir)
    segs = read_phase_segments(synth_dir)
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": "string"}, keep_default_na=False)
    path_of = dict(zip(meta["video_id"], meta["path"], strict=False))
    names = _phase_names()
    picks: dict[int, list[tuple[str, int]]] = {}
    for pid, g in segs.groupby("phase_id", sort=True):
        first = g.drop_duplicates("video_id").head(per_phase)
        picks[pid] = [(r.video_id, (r.start + r.end) // 2) for r in first.itertuples(index=False)]
    needed: dict[str, list[int]] = {}
    for items in picks.values():
        for vid, idx in items:
            needed.setdefault(vid, []).append(idx)
    frames = {vid: read_frames(synth_dir / path_of[vid], idx) for vid, idx in needed.items()}
    rows = len(picks)
    h, w = next(iter(next(iter(frames.values())).values())).shape[:2]
    cell = 1.5  # inches per image column; rows follow the frames' aspect, plus room for the caption
    fig_w, fig_h = per_phase * cell + 2.4, rows * (cell * h / w + 0.25) + 0.3  # inches
    fig = Figure(figsize=(fig_w, fig_h), dpi=72)
    axes = fig.subplots(rows, per_phase, squeeze=False, gridspec_kw=dict(
        left=2.4 / fig_w, right=0.99, top=1 - 0.3 / fig_h, bottom=0.01, wspace=0.05, hspace=0.3))
    for r, (pid, items) in enumerate(picks.items()):
        for c in range(per_phase):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(items):
                vid, idx = items[c]
                ax.imshow(frames[vid][idx])
                ax.set_title(f"{vid} f{idx}", fontsize=6, pad=1)
        axes[r][0].set_ylabel(f"{pid}. {names[pid]}", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Synthetic ophthalmic surgery: middle frame of each phase, one video per column", fontsize=9,
                 y=0.999, va="top")
    return _save(fig, out_png)


def phase_timeline(synth_dir: str | Path, out_png: str | Path, per_surgery: int = 2) -> Path:
    """Phase bars of a few narrated videos per surgery type, with narration (black) and chatter (grey) marks."""
    synth_dir = Path(synth_dir)
    segs = read_phase_segments(synth_dir)
    meta = pd.read_csv(synth_dir / "metadata.csv", dtype={"video_id": "string"}, keep_default_na=False)
    script = pd.read_parquet(synth_dir / "script.parquet")
    chosen = []
    for surgery in SURGERY_TYPES:
        m = meta[(meta["surgery_type"] == surgery)]
        m = pd.concat([m[m["kind"] == "narrated"], m[m["kind"] != "narrated"]])
        chosen += m.head(per_surgery).to_dict("records")
    names = _phase_names()
    cmap = matplotlib.colormaps["tab20"]
    fig = Figure(figsize=(11, 0.75 * len(chosen) + 1.6), dpi=90)
    ax = fig.subplots()
    seen: dict[int, object] = {}
    for row, m in enumerate(chosen):
        fps = float(m["fps"])
        y = len(chosen) - 1 - row
        order = [p.id for p in SURGERY_TYPES[m["surgery_type"]].phases]
        for s in segs[segs["video_id"] == m["video_id"]].itertuples(index=False):
            color = cmap(order.index(s.phase_id) % 10 * 2)
            bar = ax.broken_barh([(s.start / fps, (s.end - s.start) / fps)], (y - 0.3, 0.45), color=color)
            if s.phase_id not in seen:
                seen[s.phase_id] = bar
            ax.text(s.start / fps + 0.2, y - 0.08, str(s.phase_id), fontsize=6, va="center")
        for c in script[script["video_id"] == m["video_id"]].itertuples(index=False):
            ax.plot([c.start, c.end], [y + 0.25, y + 0.25], color="grey" if c.is_chatter else "black", lw=3,
                    solid_capstyle="butt")
    ax.set_yticks(range(len(chosen)))
    ax.set_yticklabels([f"{m['video_id']} ({m['surgery_type']}, {m['kind']})" for m in reversed(chosen)], fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_title("Phase timelines (numbers: phase ids; bars above: narration, grey = chatter)", fontsize=9)
    legend = sorted(seen)
    ax.legend([seen[p] for p in legend], [f"{p}. {names[p]}" for p in legend], fontsize=6, ncol=3,
              loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return _save(fig, out_png)
