"""Small real test media: espeak-ng speech muxed with PyAV into H.264 + AAC mp4 files."""

from __future__ import annotations

import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data_pipeline.config import PipelineConfig

SAMPLE_RATE = 16000

# Narration scripts of the shared test videos (see conftest.media_dir): (start_s, sentence).
NARRATED_A = [
    (0.5, "The corneal incision is made with the keratome."),
    (4.5, "Now we perform the capsulorhexis with the cystotome."),
    (9.0, "Did you watch the football game last night?"),
    (12.5, "Trypan blue stains the anterior capsule."),
]
NARRATED_B = [
    (0.5, "Phacoemulsification of the nucleus begins."),
    (5.0, "The intraocular lens is injected into the capsular bag."),
]



def espeak(text: str, speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 mono at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(wav), text], check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        t_new = np.arange(int(len(pcm) * SAMPLE_RATE / rate)) / SAMPLE_RATE
        pcm = np.interp(t_new, np.arange(len(pcm)) / rate, pcm).astype(np.float32)
    # espeak pads with silence; trim it so the ground-truth times are the voiced span.
    voiced = np.flatnonzero(np.abs(pcm) > 0.01)
    return pcm[voiced[0] : voiced[-1] + 1] if len(voiced) else pcm


def write_mp4(
    path: str | Path,
    duration_s: float,
    script: list[tuple[float, str]] = (),
    *,
    audio: bool = True,
    fps: int = 8,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
) -> list[tuple[float, float, str]]:
    """Write an mp4 with moving-colour frames and, if ``audio``, an AAC track.

    ``script`` lists (start_s, sentence): each sentence is spoken from start_s. Returns
    the ground truth (start, end, text) of the speech actually placed.
    """
    n = int(round(duration_s * SAMPLE_RATE))
    track = np.zeros(n, dtype=np.float32)
    truth = []
    for start, text in script:
        pcm = espeak(text)
        a = int(start * SAMPLE_RATE)
        pcm = pcm[: max(0, n - a)]
        track[a : a + len(pcm)] += 0.8 * pcm
        truth.append((start, start + len(pcm) / SAMPLE_RATE, text))
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if aus is not None:
            aus.layout = "mono"
        for k in range(int(round(duration_s * fps))):
            img = np.empty((size[1], size[0], 3), np.uint8)
            img[:] = (base + 9 * k) % 255
            img[: size[1] // 2, : (k * 3) % size[0]] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if aus is not None:
            chunk = 1024
            pcm16 = (np.clip(track, -1, 1) * 32767).astype(np.int16)
            for k in range(0, n, chunk):
                block = pcm16[k : k + chunk]
                frame = av.AudioFrame.from_ndarray(block[None, :], format="s16", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = k
                frame.time_base = Fraction(1, SAMPLE_RATE)
                for p in aus.encode(frame):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    return truth


def truncate(src: str | Path, dst: str | Path, keep: float = 0.5) -> None:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])


def media_truth(media_dir: Path) -> dict:
    import json

    return json.loads((media_dir / "truth.json").read_text())


def media_config(media_dir: Path, out: Path, **overrides) -> PipelineConfig:
    """A pipeline config over the shared test media (no LLM, small frames, no progress bars)."""
    cfg = PipelineConfig(output=str(out))
    cfg.input.videos = str(media_dir / "list.csv")
    cfg.llm.backend = "none"
    cfg.frames.fps = 2.0
    cfg.frames.short_side = 32
    cfg.run.progress = False
    for k, v in overrides.items():
        section, key = k.split("__")
        setattr(getattr(cfg, section), key, v)
    return cfg

