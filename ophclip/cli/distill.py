"""`ophclip distill`: distil a teacher checkpoint into a small real-time student.

    ophclip distill configs/distill_tiny.yaml data.root=out/dataset teacher.name=runs/pretrain/final
    ophclip distill configs/distill_vit_tiny.yaml data.root=out/dataset train.steps=5000
    ophclip distill configs/distill_tiny.yaml data.root=out/dataset --resume latest   # after a kill

The student folder (``<train.output_dir>/student``) loads like any model
(``ophclip.create_model_and_transforms(folder)``) and streams with ``ophclip stream``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._common import CONFIG_ARG, OVERRIDES_ARG, PROGRESS_OPTION, RESUME_OPTION, load_with_overrides

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command()
    def distill(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG, resume: str = RESUME_OPTION,
                progress: bool = PROGRESS_OPTION) -> None:
        """Distil a teacher into a small student vision tower that keeps the teacher's text side (zero-shot prompts)."""
        # lazy: CLI start-up time (distillation imports torch and the model stack)
        from ..distill import DistillConfig
        from ..train.objectives.distill import distill as run

        cfg = load_with_overrides(DistillConfig, config, overrides)
        result = run(cfg, progress=progress, resume=resume)
        params = result.counts["parameters"]
        table = Table(title=f"distilled {cfg.student.name} from {cfg.teacher.pretrained or cfg.teacher.name}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("vision parameters (student / teacher)",
                      f"{params['student']['vision']:,} / {params['teacher']['vision']:,}")
        table.add_row("vision compression", f"{result.counts['vision_compression']:.1f}x")
        table.add_row("loss (first -> last step)", f"{result.counts['first_loss']:.4f} -> {result.counts['final_loss']:.4f}")
        for key, value in result.agreement.items():
            if isinstance(value, float):
                table.add_row(f"agreement: {key}", f"{value:.4f}")
        table.add_row("agreement measured on", str(result.agreement["measured_on"]))
        table.add_row("time", f"{result.seconds:.1f} s")
        Console().print(table)
        Console().print(f"student: {result.student_dir}")
