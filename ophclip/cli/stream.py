"""`ophclip stream`: causal, per-frame phase recognition of a video file or camera.

    ophclip stream runs/distill/student case12.mp4 --prompts synthetic
    ophclip stream runs/distill/student camera:0 --classifier phases.safetensors --window 16
    ophclip stream runs/distill/student case12.mp4 --prompts p.yaml --export-onnx student.onnx --onnx student.onnx

``--save-classifier`` writes the prompt classifier once, so later runs (``--classifier``) need
no text tower. ``--out DIR`` writes ``predictions.parquet`` (one row per frame) and ``stream.json``
(settings and latency).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ophbase.io import atomic_write_json, atomic_write_parquet

from ..config import to_dict
from ..errors import ConfigError

logger = logging.getLogger(__name__)


def phase_segments(phases: list[int]) -> list[tuple[int, int, int]]:
    """Runs of one phase: (first frame, last frame, phase)."""
    runs: list[tuple[int, int, int]] = []
    for i, p in enumerate(phases):
        if runs and runs[-1][2] == p:
            runs[-1] = (runs[-1][0], i, p)
        else:
            runs.append((i, i, p))
    return runs


def register(app: typer.Typer) -> None:
    @app.command()
    def stream(
        model_dir: str = typer.Argument(..., help="Saved model folder (e.g. a distilled student) or model name."),
        source: str = typer.Argument(..., help="Video file, or camera:<index> (PyAV v4l2 input)."),
        prompts: Path = typer.Option(None, "--prompts", help="Prompt YAML with a phase section, or a shipped name (synthetic, cataract101, ...)."),
        classifier: Path = typer.Option(None, "--classifier", help="Saved classifier (instead of --prompts)."),
        save_classifier: Path = typer.Option(None, "--save-classifier", help="Write the prompt classifier here."),
        window: int = typer.Option(8, "--window", help="Frames in the causal ring buffer."),
        ema: float = typer.Option(0.5, "--ema", help="EMA weight of the newest frame (1 = no smoothing)."),
        margin: float = typer.Option(0.0, "--margin", help="Hysteresis: lead a new phase needs."),
        hold: int = typer.Option(1, "--hold", help="Hysteresis: frames the lead must last."),
        onnx: Path = typer.Option(None, "--onnx", help="Run the vision tower from this ONNX file."),
        export_onnx: Path = typer.Option(None, "--export-onnx", help="Export the vision tower to ONNX first."),
        max_frames: int = typer.Option(None, "--max-frames", help="Stop after this many frames."),
        camera_format: str = typer.Option("v4l2", "--camera-format", help="FFmpeg device input for cameras."),
        out: Path = typer.Option(None, "--out", help="Folder for predictions.parquet and stream.json."),
    ) -> None:
        """Recognise the surgical phase of every frame as it arrives (causal), with latency figures."""
        # lazy: CLI start-up time (streaming imports torch, PyAV and the model stack; pandas for the table)
        import pandas as pd
        import torch

        from ..stream import PhaseStreamer, StreamConfig, export_vision_onnx, onnx_parity

        if (prompts is None) == (classifier is None):
            raise ConfigError("give --prompts P.yaml or --classifier FILE (one of the two)")
        cfg = StreamConfig(window=window, ema_alpha=ema, hysteresis_margin=margin, hysteresis_frames=hold)
        cfg.validate()
        streamer = PhaseStreamer.from_pretrained(model_dir, prompts=prompts, classifier=classifier, config=cfg)
        console = Console()
        if save_classifier is not None:
            streamer.classifier.save(save_classifier)
            console.print(f"classifier: {save_classifier}")
        if export_onnx is not None:
            export_vision_onnx(streamer.model, export_onnx)
            pixels = torch.randn(4, 3, streamer.model.image_size, streamer.model.image_size)
            console.print(f"ONNX: {export_onnx} (max |onnx - torch| = {onnx_parity(streamer.model, export_onnx, pixels):.2e})")
        if onnx is not None:
            cfg.onnx = str(onnx)
            streamer = PhaseStreamer(streamer.model, streamer.preprocess, streamer.classifier, cfg)
        steps = list(streamer.run(source, max_frames=max_frames, camera_format=camera_format))
        stats = streamer.latency_stats()
        names = streamer.class_names
        table = Table(title=f"streamed {len(steps)} frames of {source}")
        for col in ("frames", "phase", "mean confidence"):
            table.add_column(col)
        for lo, hi, p in phase_segments([s.phase for s in steps]):
            conf = sum(float(steps[i].smoothed[p]) for i in range(lo, hi + 1)) / (hi - lo + 1)
            table.add_row(f"{lo}-{hi}", names[p], f"{conf:.2f}")
        console.print(table)
        console.print(f"latency per frame: p50 {stats.get('p50_ms', float('nan')):.1f} ms, p99 "
                      f"{stats.get('p99_ms', float('nan')):.1f} ms; {stats.get('model_fps', 0):.1f} frames/s "
                      f"(model), {stats.get('wall_fps', 0):.1f} frames/s with decoding"
                      f"{' [onnxruntime]' if onnx else ''}")
        if out is not None:
            rows = pd.DataFrame({"frame_index": [s.index for s in steps], "phase": [s.phase for s in steps],
                                 "phase_name": [s.phase_name for s in steps],
                                 "confidence": [float(s.smoothed[s.phase]) for s in steps],
                                 "latency_ms": [s.latency_ms for s in steps]})
            atomic_write_parquet(out / "predictions.parquet", rows)
            atomic_write_json(out / "stream.json", {"model": model_dir, "source": source, "config": to_dict(cfg),
                                                    "class_names": names, "latency": stats})
            console.print(f"predictions: {out / 'predictions.parquet'}")
