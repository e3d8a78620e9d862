"""`ophclip demo --out DIR`: the whole chain on the synthetic dataset, with a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder for the data and report.md."),
        synth_config: Path | None = typer.Option(None, "--synth-config", help="Synth YAML (default: the built-in "
                                                                              "demo preset = configs/synth_demo.yaml)."),
        stages: str | None = typer.Option(None, "--stages", help="Comma-separated stage names to run (default: all)."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: the config's)."),
        pipeline_videos: int = typer.Option(12, "--pipeline-videos", help="Videos the ASR pipeline stage transcribes."),
        pretrain_override: list[str] = typer.Option(None, "--pretrain", help="Override of configs/pretrain_demo.yaml, "
                                                                            "e.g. --pretrain train.steps=300 (repeatable)."),
        overrides: list[str] = typer.Argument(None, help="Dotted overrides of the synth config, e.g. n_silent=10"),
    ) -> None:
        """Generate the demo dataset, run every stage, and write report.md, counts.json and figures into --out."""
        from ..demo import run_demo  # lazy: CLI start-up time (the demo imports every stage's stack)

        report = run_demo(out, synth_config=synth_config, overrides=overrides or [],
                          stages=[s.strip() for s in stages.split(",")] if stages else None, workers=workers,
                          pipeline_videos=pipeline_videos, pretrain_overrides=pretrain_override or [])
        Console().print(f"report: {report}")
