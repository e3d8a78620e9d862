"""`ophclip pretrain CONFIG [key=value ...] [--resume latest]`: hierarchical contrastive pretraining.

    ophclip pretrain configs/pretrain_tiny.yaml data.root=out/dataset train.output_dir=runs/pretrain
    ophclip pretrain configs/pretrain_tiny.yaml data.root=out/dataset --resume latest
    torchrun --nproc_per_node=2 $(which ophclip) pretrain configs/pretrain_tiny.yaml data.root=out/dataset

Writes ``<train.output_dir>/``: config.yaml, run.json, log.jsonl, tensorboard/,
checkpoints/{latest,best}.pt and final/ (the trained model, ``save_pretrained`` format).
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
    table = Table(title="ophclip pretrain")
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("steps", str(summary["steps"]))
    for key, first in summary["first_loss"].items():
        last = summary["last_loss"].get(key, float("nan"))
        table.add_row(key, f"{first:.4f} -> {last:.4f}")
    table.add_row("samples/s (median)", f"{summary['samples_per_s']:.1f}")
    if summary["best_metric"] is not None:
        table.add_row("best clip loss", f"{summary['best_metric']:.4f}")
    out = Path(summary["output_dir"])
    table.add_row("model", str(out / "final"))
    table.add_row("checkpoints", str(out / "checkpoints"))
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def pretrain(
        config: Path = CONFIG_ARG,
        overrides: list[str] = OVERRIDES_ARG,
        resume: str = RESUME_OPTION,
        progress: bool = PROGRESS_OPTION,
    ) -> None:
        """Pretrain a dual encoder on a dataset root (clip level + video level, one optimizer)."""
        # lazy: CLI start-up time (training imports torch and the model stack)
        from ..train import PretrainConfig
        from ..train import pretrain as run

        cfg = load_with_overrides(PretrainConfig, config, overrides)
        summary = run(cfg, resume=resume, progress=progress)
        if summary is not None:
            Console().print(summary_table(summary))
