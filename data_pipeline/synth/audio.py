"""Speech for narrated videos: espeak-ng TTS, and the mix that becomes the mp4's audio track.

espeak-ng runs as a subprocess that writes a WAV to stdout. Its leading and trailing
silence is trimmed, so a sentence's script window [start, end) is exactly where its
speech is in the mix. Sentences are placed in order without overlap; one that cannot
start within its phase window is dropped (and so never appears in the script).
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from ..errors import StageError
from .config import NarrationConfig
from .narration import Sentence, spoken_form

logger = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
SILENCE_THRESHOLD = 0.01  # |amplitude| below this at the ends of a TTS clip is trimmed


@dataclass
class Voice:
    name: str
    words_per_minute: int
    pitch: int


@dataclass
class PlacedSentence:
    text: str
    phase_id: int
    is_chatter: bool
    start: float
    end: float


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


@functools.lru_cache(maxsize=4096)
def speak(text: str, voice: str, words_per_minute: int, pitch: int, sample_rate: int) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 mono at ``sample_rate``, silence trimmed at both ends."""
    if not espeak_available():
        raise StageError("espeak-ng not found: narration needs it (apt-get install espeak-ng), "
                         "or generate with n_narrated=0 and eval_kind=silent")
    cmd = [ESPEAK, "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "--stdout", text]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise StageError(f"espeak-ng failed for voice {voice!r}: {e}") from None
    if proc.returncode != 0 or len(proc.stdout) < 64:
        raise StageError(f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()[:200]}; list voices with `espeak-ng --voices=en`")
    pcm, rate = _read_wav(proc.stdout)
    pcm = resample(pcm, rate, sample_rate)
    loud = np.flatnonzero(np.abs(pcm) > SILENCE_THRESHOLD)
    if len(loud) == 0:
        return np.zeros(0, np.float32)
    return pcm[loud[0]:loud[-1] + 1]


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling: windowed-sinc low-pass below the lower Nyquist, then linear interpolation.

    (numpy only: scipy.signal costs 1.6 s of import in every worker process.)
    """
    if rate == target or len(x) == 0:
        return x.astype(np.float32)
    if target < rate:
        cutoff = 0.45 * target / rate  # cycles per input sample, with a margin below target Nyquist
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    t = np.arange(int(len(x) * target / rate)) * (rate / target)
    return np.interp(t, np.arange(len(x)), x).astype(np.float32)


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM mono from a RIFF WAV; espeak-ng's stdout header may carry placeholder sizes."""
    buf = io.BytesIO(data)
    if buf.read(4) != b"RIFF":
        raise StageError("espeak-ng did not return a WAV stream")
    buf.read(8)
    rate = 22050
    while True:
        head = buf.read(8)
        if len(head) < 8:
            raise StageError("espeak-ng WAV has no data chunk")
        chunk, size = head[:4], int.from_bytes(head[4:], "little")
        if chunk == b"fmt ":
            fmt = buf.read(size)
            rate = int.from_bytes(fmt[4:8], "little")
        elif chunk == b"data":
            raw = buf.read()  # to the end: the size field may be a placeholder
            raw = raw[: len(raw) // 2 * 2]
            return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, rate
        else:
            buf.read(size)


def pick_voice(cfg: NarrationConfig, rng: np.random.Generator) -> Voice:
    lo, hi = cfg.words_per_minute
    return Voice(cfg.voices[rng.integers(len(cfg.voices))], int(rng.integers(lo, hi + 1)), int(rng.integers(35, 65)))


def place_and_mix(sentences: list[Sentence], duration_s: float, voice: Voice, cfg: NarrationConfig,
                  rng: np.random.Generator) -> tuple[list[PlacedSentence], np.ndarray]:
    """Speak the sentences, place them in order without overlap, and mix them over room noise."""
    sr = cfg.sample_rate
    n = int(round(duration_s * sr))
    track = rng.normal(0.0, cfg.room_noise, n).astype(np.float32)
    placed: list[PlacedSentence] = []
    cursor = 0.0
    for s in sentences:
        start = max(s.earliest, cursor) + rng.uniform(*cfg.gap_s)
        if start > s.latest:
            continue
        # Whole milliseconds, so the SRT (ms resolution) and script.parquet hold the same times.
        start = round(start, 3)
        a = int(round(start * sr))
        for text in filter(None, (s.text, s.without_tools)):
            pcm = speak(spoken_form(text), voice.name, voice.words_per_minute, voice.pitch, sr)
            pcm = np.pad(pcm, (0, -len(pcm) % max(1, sr // 1000)))
            if 0 < len(pcm) and a + len(pcm) <= n - int(0.1 * sr):
                break
        else:
            continue  # silent or too long for what is left of the video, even without its tool clause
        peak = float(np.max(np.abs(pcm)))
        track[a:a + len(pcm)] += pcm * (cfg.speech_peak / max(peak, 1e-6))
        placed.append(PlacedSentence(text, s.phase_id, s.is_chatter, a / sr, (a + len(pcm)) / sr))
        cursor = (a + len(pcm)) / sr
    return placed, np.clip(track, -1.0, 1.0)
