"""One video, end to end: plan, narration, frames, mp4, SRT and tools CSV (a process-pool job).

Kept free of pandas and of the dataset tables so worker processes start fast.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import StageError
from . import writer
from .audio import pick_voice, place_and_mix
from .config import SynthConfig
from .narration import plan_script
from .plan import STREAM_AUDIO, STREAM_NARRATION, plan_video, video_rng
from .render import Renderer

logger = logging.getLogger(__name__)


def generate_video(cfg: SynthConfig, index: int, split: str, kind: str, surgery: str, out_dir: str) -> dict:
    """Render, narrate, encode and annotate one video; return its rows for the dataset tables."""
    cpu0 = time.process_time()
    out = Path(out_dir)
    plan = plan_video(cfg, index, split, kind, surgery)
    placed, audio, narrator = [], None, ""
    if kind == "narrated":
        nrng = video_rng(cfg.seed, index, STREAM_NARRATION)
        voice = pick_voice(cfg.narration, nrng)
        narrator = f"{voice.name}@{voice.words_per_minute}wpm"
        sentences = plan_script(plan, cfg.narration, nrng)
        placed, audio = place_and_mix(sentences, plan.duration_s, voice, cfg.narration,
                                      video_rng(cfg.seed, index, STREAM_AUDIO))
    renderer = Renderer(plan, cfg.nuisance, cfg.seed)
    rel = f"videos/{plan.video_id}.mp4"
    n = writer.write_mp4(out / rel, renderer.iter_frames(), plan.fps, plan.width, plan.height, audio,
                         cfg.narration.sample_rate, cfg.qp, {"title": plan.title, "comment": plan.description})
    if n != plan.n_frames:  # the encoder must not drop or add frames: annotations index them
        raise StageError(f"{out / rel}: encoded {n} frames but the plan has {plan.n_frames}; annotations would be off")
    if kind == "narrated":
        writer.write_srt(out / "captions" / f"{plan.video_id}.srt", [(p.start, p.end, p.text) for p in placed])
    writer.write_tools_csv(out / "annotations" / "tools" / f"{plan.video_id}.csv", plan.tool_matrix())
    return {
        "plan": plan,
        "rel": rel,
        "narrator": narrator,  # espeak-ng voice and speed, empty for silent videos
        "cpu_s": time.process_time() - cpu0,  # this process only (espeak-ng subprocesses not included)
        "script": [dict(video_id=plan.video_id, start=p.start, end=p.end, text=p.text, phase_id=p.phase_id,
                        is_chatter=p.is_chatter) for p in placed],
    }
