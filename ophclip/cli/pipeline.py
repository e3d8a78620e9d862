"""`ophclip pipeline run CONFIG [overrides]` and `ophclip pipeline status DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from data_pipeline.config import PipelineConfig
from data_pipeline.errors import InputError

from ..config import save_config
from ._common import CONFIG_ARG, OVERRIDES_ARG, load_with_overrides


def _summary_table(counts: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("item", style="bold")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        if isinstance(value, dict):
            for sub, n in value.items():
                table.add_row(f"{key.replace('_by_status', '')}: {sub}", str(n))
        else:
            table.add_row(key, str(value))
    return table


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Videos -> dataset root (clip/title texts, silent pool, frame cache).", no_args_is_help=True)

    @group.command("run")
    def run(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
        """Run (or resume) the pipeline; rerunning skips finished work."""
        # lazy: CLI start-up time (the run pulls in torch, pandas, PyAV and faster-whisper)
        from data_pipeline.run import run_pipeline

        cfg = load_with_overrides(PipelineConfig, config, overrides)
        if cfg.output:
            save_config(cfg, Path(cfg.output) / "config.yaml")
        info = run_pipeline(cfg)
        Console().print(_summary_table(info["counts"], f"pipeline: {cfg.output}"))

    @group.command("status")
    def status(root: Path = typer.Argument(..., help="Dataset root written by `pipeline run`.")) -> None:
        """Show what a (possibly unfinished) run has done."""
        from data_pipeline.run import STATE_DIR  # lazy: CLI start-up time, as in `run`

        if not root.is_dir():
            raise InputError(f"{root}: no such folder")
        table = Table(title=f"pipeline status: {root}")
        table.add_column("stage", style="bold")
        table.add_column("records", justify="right")
        state = root / STATE_DIR
        for stage in ("probe", "transcribe", "frames"):
            table.add_row(stage, str(len(list((state / stage).glob("*.json")))))
        table.add_row("llm cache", str(len(list((state / "llm").glob("*/*.json")))))
        console = Console()
        console.print(table)
        run_json = root / "run.json"
        if run_json.is_file():
            info = json.loads(run_json.read_text("utf-8"))
            console.print(_summary_table(info["counts"], "last completed run"))
        else:
            console.print("no run.json yet: the run has not completed (rerun `ophclip pipeline run` to resume)")

    app.add_typer(group, name="pipeline")
