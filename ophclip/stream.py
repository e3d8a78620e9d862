"""Streaming, causal phase recognition: frames arrive one at a time and each gets a phase now.

    from ophclip.stream import PhaseStreamer, StreamConfig
    streamer = PhaseStreamer.from_pretrained("runs/distill/student", prompts="synthetic")
    for step in streamer.run("case12.mp4"):          # a file, a camera ("camera:0"), or an iterator of arrays
        print(step.index, step.phase_name, step.latency_ms)
    streamer.latency_stats()                          # p50 / p99 per-frame latency, frames/s

Per frame, and using only that frame and earlier ones (causal):

1. the frame is preprocessed and encoded by the vision tower (PyTorch, or an ONNX export run
   by onnxruntime, :func:`export_vision_onnx`); only this one frame is encoded;
2. its embedding enters a ring buffer of the last ``window`` frame embeddings; at the start of a
   stream the buffer is padded with copies of the first frame, so frame 0 already has a full
   window; the model's temporal pooling turns the buffer into a clip embedding;
3. phase probabilities are the softmax over the prompt classifier (one text embedding per phase,
   computed once from prompts, or loaded from a saved :class:`PhaseClassifier` file, so a
   deployment needs no text tower);
4. :class:`PhaseSmoother` applies an exponential moving average (``ema_alpha``) and hysteresis:
   the reported phase changes only when another phase leads it by ``hysteresis_margin`` for
   ``hysteresis_frames`` consecutive frames, so the phase does not flicker.

Frame sources: a video file is decoded by PyAV frame by frame; a camera is opened through PyAV's
FFmpeg device input (``v4l2`` on Linux, ``/dev/video<index>``; pass ``camera_format`` elsewhere:
``avfoundation`` on macOS, ``dshow`` on Windows); OpenCV is not needed. A file that ends before
the frame count in its header, a frame whose size differs from the first, or a file that cannot
be opened raises :class:`StreamError` naming the file (or frame) and what to do.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from data_pipeline.synth.preview import read_phase_segments
from ophbase.io import atomic_path
from ophbase.video import open_video

from .classifier import build_zero_shot_classifier, logit_scale_of
from .errors import ConfigError, DataError, ModelError
from .factory import create_model_and_transforms, get_tokenizer
from .plots import phase_ribbon
from .prompts import load_prompt_file, resolve_prompt_file, select_prompts

logger = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "ophclip-phase-classifier"


class StreamError(DataError):
    """A frame source that cannot be read, ends early, or changes frame size."""


@dataclass
class StreamConfig:
    """How a stream is recognised (data only; ``ophclip stream`` options map onto it)."""

    window: int = 8  # frames in the causal ring buffer (1: the current frame only)
    ema_alpha: float = 0.5  # smoothed = alpha * p_t + (1 - alpha) * smoothed_{t-1}; 1.0 turns smoothing off
    hysteresis_margin: float = 0.0  # a new phase must lead the current one by this much in smoothed probability
    hysteresis_frames: int = 1  # ... for this many consecutive frames (1: switch at once)
    onnx: str | None = None  # run the vision tower from this ONNX file with onnxruntime
    onnx_threads: int = 0  # onnxruntime intra-op threads (0: its default)

    def validate(self) -> None:
        if self.window < 1:
            raise ConfigError(f"stream window = {self.window}; expected >= 1 frame")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ConfigError(f"stream ema_alpha = {self.ema_alpha}; expected 0 < alpha <= 1 (1 = no smoothing)")
        if self.hysteresis_margin < 0 or self.hysteresis_frames < 1:
            raise ConfigError("stream hysteresis_margin must be >= 0 and hysteresis_frames >= 1")


# --------------------------------------------------------------------------- classifier


@dataclass
class PhaseClassifier:
    """Text-embedding classifier: ``(D, K)`` normalised class embeddings, class names, logit scale."""

    class_names: list[str]
    weights: torch.Tensor  # (D, K)
    logit_scale: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.class_names):
            raise ModelError(f"classifier weights {tuple(self.weights.shape)} do not match "
                             f"{len(self.class_names)} class names; expected (D, K)")

    @classmethod
    def from_prompts(cls, model, tokenizer, prompts: str | Path, task: str = "phase",
                     class_names: Sequence[str] | None = None) -> PhaseClassifier:
        """Encode a prompt file's ``task`` section once (classes in the file's order unless given)."""
        sections = load_prompt_file(prompts)
        if task not in sections:
            raise ConfigError(f"{prompts}: no {task!r} section to stream")
        names = list(class_names) if class_names is not None else sections[task].class_names
        ps = select_prompts(sections, task, names)
        weights = build_zero_shot_classifier(model, tokenizer, ps)
        return cls(names, weights, logit_scale_of(model), str(prompts))

    def save(self, path: str | Path) -> Path:
        """safetensors with the class names and scale in its metadata, written atomically."""
        path = Path(path)
        meta = {"format": CLASSIFIER_FORMAT, "class_names": json.dumps(self.class_names),
                "logit_scale": repr(float(self.logit_scale)), "source": self.source}
        with atomic_path(path) as tmp:
            save_file({"weights": self.weights.float().contiguous()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PhaseClassifier:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"classifier file not found: {path} (write one with `ophclip stream --save-classifier`)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                weights = f.get_tensor("weights")
        except Exception as e:  # safetensors raises its own error types on corrupt files
            raise ConfigError(f"{path}: not a saved phase classifier ({e})") from None
        if meta.get("format") != CLASSIFIER_FORMAT:
            raise ConfigError(f"{path}: not a saved phase classifier (metadata format {meta.get('format')!r})")
        return cls(json.loads(meta["class_names"]), weights, float(meta["logit_scale"]), str(path))


# --------------------------------------------------------------------------- smoothing


class PhaseSmoother:
    """EMA over probabilities, then hysteresis on the reported phase (causal, O(K) per frame).

    ``s_0 = p_0``, ``s_t = alpha * p_t + (1 - alpha) * s_{t-1}``. The first phase is
    ``argmax s_0``. Afterwards, the leader ``k = argmax s_t`` replaces the current phase ``c``
    once ``s_t[k] - s_t[c] >= margin`` has held for ``frames`` consecutive frames with the same
    leader ``k``; any frame that breaks the run restarts the count.
    """

    def __init__(self, alpha: float = 0.5, margin: float = 0.0, frames: int = 1):
        self.alpha, self.margin, self.frames = alpha, margin, frames
        self.reset()

    def reset(self) -> None:
        self.smoothed: np.ndarray | None = None
        self.phase: int = -1
        self._candidate, self._run = -1, 0

    def step(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        probs = np.asarray(probs, dtype=np.float64)
        if self.smoothed is None:
            self.smoothed = probs.copy()
            self.phase = int(np.argmax(probs))
            return self.smoothed.copy(), self.phase
        self.smoothed = self.alpha * probs + (1.0 - self.alpha) * self.smoothed
        leader = int(np.argmax(self.smoothed))
        if leader != self.phase and self.smoothed[leader] - self.smoothed[self.phase] >= self.margin:
            self._run = self._run + 1 if leader == self._candidate else 1
            self._candidate = leader
            if self._run >= self.frames:
                self.phase, self._candidate, self._run = leader, -1, 0
        else:
            self._candidate, self._run = -1, 0
        return self.smoothed.copy(), self.phase


# --------------------------------------------------------------------------- vision encoders


class FrameEncoder(Protocol):
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` preprocessed frames -> ``(N, D)`` embeddings (not normalised)."""
        ...


class TorchEncoder:
    def __init__(self, model):
        self.model = model.eval()

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.model.logit_scale.device)).float().cpu()


class OnnxEncoder:
    """The vision tower exported by :func:`export_vision_onnx`, run by onnxruntime on the CPU."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort  # lazy: onnxruntime is the optional `onnx` extra

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"ONNX file not found: {path} (export one with `ophclip stream --export-onnx`)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for bad files
            raise ModelError(f"{path}: onnxruntime cannot load it ({e})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: pixels.numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(out)


def export_vision_onnx(model, path: str | Path, opset: int = 17) -> Path:
    """Export ``model.visual`` (input ``pixels`` (N, 3, S, S), output ``embedding`` (N, D)) atomically.

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``): the torch.export-based one
    needs the ``onnxscript`` package, which this environment does not ship.
    """
    path = Path(path)
    visual = model.visual.eval()
    example = torch.zeros(1, 3, model.image_size, model.image_size, device=model.logit_scale.device)
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy-exporter notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(visual, (example,), str(tmp), dynamo=False, input_names=["pixels"],
                          output_names=["embedding"], dynamic_axes={"pixels": {0: "n"}, "embedding": {0: "n"}},
                          opset_version=opset)
    logger.info("exported the vision tower of %s to %s", model.config.model_name, path)
    return path


# --------------------------------------------------------------------------- frame sources


def iter_video_file(path: str | Path, strict: bool = True, tolerance: int = 1) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame (RGB uint8 ``(H, W, 3)``) with PyAV.

    With ``strict``, a file that yields fewer frames than its header declares (minus
    ``tolerance``) raises :class:`StreamError` after its last readable frame.
    """
    path = Path(path)
    with open_video(path, StreamError) as (container, stream):
        declared = int(stream.frames or 0)
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except av.error.FFmpegError as e:
            of = f" of the {declared} its header declares" if declared else ""
            raise StreamError(f"{path}: the video ended early: decoding failed after {n} frames{of} ({e}); the file "
                              "is truncated or corrupt: re-copy or re-export it") from None
    if n == 0:
        raise StreamError(f"{path}: the video stream holds no frames")
    if strict and declared and n < declared - tolerance:
        raise StreamError(f"{path}: the video ended early: {n} of the {declared} frames its header declares "
                          "could be decoded (truncated copy?); re-copy or re-export the file")


def iter_camera(index: int, camera_format: str = "v4l2", options: dict[str, str] | None = None) -> Iterator[np.ndarray]:
    """Frames from a camera through PyAV's FFmpeg device input (``/dev/video<index>`` with v4l2)."""
    device = f"/dev/video{index}" if camera_format == "v4l2" else str(index)
    try:
        container = av.open(device, format=camera_format, options=options or {})
    except (av.error.FFmpegError, OSError) as e:
        raise StreamError(f"camera {index} ({device}, format {camera_format}) cannot be opened ({e}); check the "
                          "device exists and is free, or pass camera_format (avfoundation on macOS, dshow on Windows)"
                          ) from None
    with container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def open_source(source: Any, camera_format: str = "v4l2") -> Iterator[np.ndarray]:
    """A file path, ``camera:<index>`` (or an int), or any iterable of uint8 ``(H, W, 3)`` arrays."""
    if isinstance(source, int) and not isinstance(source, bool):
        return iter_camera(source, camera_format)
    if isinstance(source, (str, Path)):
        text = str(source)
        if text.startswith("camera:"):
            try:
                return iter_camera(int(text.split(":", 1)[1]), camera_format)
            except ValueError:
                raise StreamError(f"{text!r}: expected camera:<index>, e.g. camera:0") from None
        return iter_video_file(text)
    if isinstance(source, np.ndarray) and source.ndim == 4:
        return iter(source)
    if isinstance(source, Iterable):
        return iter(source)
    raise StreamError(f"cannot stream from a {type(source).__name__}; give a video path, camera:<index> "
                      "or an iterable of uint8 (H, W, 3) frames")


# --------------------------------------------------------------------------- the streamer


@dataclass
class StreamStep:
    """What the streamer emits for one frame."""

    index: int
    probs: np.ndarray  # (K,) softmax of this frame's window
    smoothed: np.ndarray  # (K,) after EMA
    phase: int  # after hysteresis
    phase_name: str
    latency_ms: float  # preprocessing + encoding + pooling + classification + smoothing of this frame


@dataclass
class LatencyStats:
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0  # run() time including decoding

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms)
        if lat.size == 0:
            return {"frames": 0}
        return {"frames": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "mean_ms": float(lat.mean()),
                "max_ms": float(lat.max()), "model_fps": float(1000.0 / lat.mean()),
                "wall_fps": float(lat.size / self.wall_s) if self.wall_s > 0 else float("nan")}


class PhaseStreamer:
    """Causal, per-frame phase recognition (module docstring)."""

    def __init__(self, model, preprocess, classifier: PhaseClassifier, config: StreamConfig | None = None,
                 encoder: FrameEncoder | None = None):
        """``model`` gives temporal pooling (and the encoder when ``encoder`` is None); ``preprocess`` is its eval transform."""
        self.config = config or StreamConfig()
        self.config.validate()
        self.model = model.eval()
        self.preprocess = preprocess
        self.classifier = classifier
        if encoder is None:
            encoder = OnnxEncoder(self.config.onnx, self.config.onnx_threads) if self.config.onnx else TorchEncoder(model)
        self.encoder = encoder
        if classifier.weights.shape[0] != model.embed_dim:
            raise ModelError(f"classifier {classifier.source} has {classifier.weights.shape[0]}-d class embeddings "
                             f"but the model embeds into {model.embed_dim}; build it with this model's text tower")
        self._weights = F.normalize(classifier.weights.float(), dim=0)
        self.smoother = PhaseSmoother(self.config.ema_alpha, self.config.hysteresis_margin,
                                      self.config.hysteresis_frames)
        self.stats = LatencyStats()
        self.reset()

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, prompts: str | Path | None = None,
                        classifier: str | Path | PhaseClassifier | None = None,
                        config: StreamConfig | None = None, device: str = "cpu") -> PhaseStreamer:
        """Load a saved model (any OphCLIP, e.g. a distilled student) and prompts or a saved classifier, once."""
        if (prompts is None) == (classifier is None):
            raise ConfigError("give exactly one of prompts (a prompt YAML) or classifier (a saved classifier file)")
        model, _, preprocess = create_model_and_transforms(model_dir, device=device)
        if isinstance(classifier, PhaseClassifier):
            clf = classifier
        elif classifier is not None:
            clf = PhaseClassifier.load(classifier)
        else:
            clf = PhaseClassifier.from_prompts(model, get_tokenizer(model_dir), prompts)
        return cls(model, preprocess, clf, config)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def reset(self) -> None:
        """Start a new stream: empty buffer, smoother and frame size."""
        self._buffer: collections.deque[torch.Tensor] = collections.deque(maxlen=self.config.window)
        self._shape: tuple[int, ...] | None = None
        self._index = 0
        self.smoother.reset()
        self.stats = LatencyStats()

    @torch.no_grad()
    def push(self, frame: np.ndarray) -> StreamStep:
        """Recognise one RGB uint8 ``(H, W, 3)`` frame, given every frame pushed before it."""
        start = time.perf_counter()
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise StreamError(f"frame {self._index}: expected RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise StreamError(f"frame {self._index} is {frame.shape[1]}x{frame.shape[0]} px but the stream started at "
                              f"{self._shape[1]}x{self._shape[0]}; a stream keeps one frame size: resize the source, "
                              "or call reset() before streaming a new one")
        embedding = self.encoder(self.preprocess(frame))[0]
        if not self._buffer:
            self._buffer.extend([embedding] * self.config.window)  # pad the start with the first frame
        else:
            self._buffer.append(embedding)
        window = torch.stack(list(self._buffer)).unsqueeze(0).to(self.model.logit_scale.device)
        clip = F.normalize(self.model.pool_frames(window).float().cpu(), dim=-1)[0]
        probs = torch.softmax(self.classifier.logit_scale * clip @ self._weights, dim=-1).numpy()
        smoothed, phase = self.smoother.step(probs)
        latency = (time.perf_counter() - start) * 1000.0
        self.stats.latencies_ms.append(latency)
        step = StreamStep(self._index, probs, smoothed, phase, self.class_names[phase], latency)
        self._index += 1
        return step

    def run(self, source: Any, max_frames: int | None = None, camera_format: str = "v4l2") -> Iterator[StreamStep]:
        """Stream a file, camera or iterable of frames; yields one :class:`StreamStep` per frame."""
        self.reset()
        start = time.perf_counter()
        try:
            for i, frame in enumerate(open_source(source, camera_format)):
                if max_frames is not None and i >= max_frames:
                    break
                yield self.push(frame)
        finally:
            self.stats.wall_s = time.perf_counter() - start

    def latency_stats(self) -> dict[str, float]:
        return self.stats.summary()


def onnx_parity(model, onnx_path: str | Path, pixels: torch.Tensor) -> float:
    """Largest absolute difference between the PyTorch and onnxruntime vision towers on ``pixels``."""
    reference = TorchEncoder(model)(pixels)
    return float((OnnxEncoder(onnx_path)(pixels.cpu()) - reference).abs().max())


# --------------------------------------------------------------------------- `ophclip demo` stage


def demo_stream_stage(ctx, window: int = 8) -> str:
    """Stream one held-out synthetic video with the distilled student; ribbon against the ground truth, and fps.

    ``ctx`` is :class:`ophclip.demo.DemoContext` after the distill stage; returns Markdown.
    """
    student_dir = ctx.results["distill"]["student_dir"]
    prompts = resolve_prompt_file("synthetic")
    meta = pd.read_csv(ctx.synth_dir / "metadata.csv", dtype={"video_id": str}, keep_default_na=False)
    held = meta[meta["split"] == "eval"]
    if held.empty:
        raise ConfigError("the streaming demo needs a held-out (eval) synthetic video; set n_eval > 0")
    row = held.iloc[0]
    config = StreamConfig(window=window, ema_alpha=0.5, hysteresis_margin=0.02, hysteresis_frames=3)
    streamer = PhaseStreamer.from_pretrained(student_dir, prompts=prompts, config=config)
    steps = list(streamer.run(ctx.synth_dir / row["path"]))
    stats = streamer.latency_stats()
    meaning = pd.read_csv(ctx.synth_dir / "annotations" / "cataract101" / "phases.csv", sep=";")
    name_of = dict(zip(meaning["Phase"], meaning["Meaning"], strict=False))
    index_of = {n: i for i, n in enumerate(streamer.class_names)}
    truth = np.full(len(steps), -1, dtype=np.int64)
    segs = read_phase_segments(ctx.synth_dir)
    for s in segs[segs["video_id"] == row["video_id"]].itertuples(index=False):
        truth[s.start : min(s.end, len(steps))] = index_of.get(name_of.get(s.phase_id, ""), -1)
    pred = np.array([s.phase for s in steps])
    scored = truth >= 0
    accuracy = float((pred[scored] == truth[scored]).mean()) if scored.any() else float("nan")
    times = np.arange(len(steps)) / float(row["fps"])
    phase_ribbon(times, truth, pred, streamer.class_names, ctx.out_dir / "stream_ribbon.png",
                 title=f"{row['video_id']}: causal streaming, accuracy {accuracy:.2f}")
    ctx.results["stream"] = {"video_id": row["video_id"], "accuracy": accuracy, "latency": stats,
                             "config": dataclasses.asdict(config)}
    return "\n".join([
        f"Streamed held-out video `{row['video_id']}` ({len(steps)} frames) frame by frame through the student, "
        f"causally (ring buffer of {window} frames, EMA 0.5, hysteresis of 3 frames): **{stats['model_fps']:.0f} "
        f"frames/s** (p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms per frame on this CPU; "
        f"{stats['wall_fps']:.0f} frames/s including decoding). Zero-shot phase accuracy of the stream: {accuracy:.3f}.",
        "", "![streamed phases against ground truth](stream_ribbon.png)"])
