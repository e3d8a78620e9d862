"""`ophclip ssl CONFIG [key=value ...] [--resume latest]`: self-supervised pretraining of a vision tower.

    ophclip ssl configs/ssl_tiny.yaml data.root=out/dataset train.output_dir=runs/ssl
    ophclip ssl configs/ssl_tiny.yaml data.root=out/dataset --resume latest
    ophclip pretrain configs/pretrain_tiny.yaml data.root=out/dataset model.init_vision_from=runs/ssl/vision

Writes ``<train.output_dir>/``: config.yaml, run.json, log.jsonl, tensorboard/,
checkpoints/latest.pt and vision/ (vision.safetensors + vision_config.json).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._common import CONFIG_ARG, OVERRIDES_ARG, PROGRESS_OPTION, RESUME_OPTION, load_with_overrides

logger = logging.getLogger(__name__)


def summary_table(summary: dict):
    table = Table(title="ophclip ssl")
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("method", summary["method"])
    table.add_row("steps", str(summary["steps"]))
    table.add_row("videos", str(summary["videos"]))
    table.add_row("loss", f"{summary['first_loss']:.4f} -> {summary['last_loss']:.4f}")
    table.add_row("clips/s", f"{summary['clips_per_s']:.1f}")
    for key, value in summary["last_monitor"].items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("collapse warning", "yes" if summary["collapse_warned"] else "no")
    table.add_row("vision tower", summary["vision_dir"])
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def ssl(
        config: Path = CONFIG_ARG,
        overrides: list[str] = OVERRIDES_ARG,
        resume: str = RESUME_OPTION,
        progress: bool = PROGRESS_OPTION,
    ) -> None:
        """Self-supervised (DINO/SVT or InfoNCE) pretraining of a vision tower on a dataset root's frame cache."""
        # lazy: CLI start-up time (training imports torch, open_clip and the model stack)
        from ..ssl.config import SSLConfig
        from ..train.objectives.ssl import run_ssl

        cfg = load_with_overrides(SSLConfig, config, overrides)
        Console().print(summary_table(run_ssl(cfg, resume=resume, progress=progress)))
