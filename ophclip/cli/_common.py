"""Small helpers shared by the subcommand modules."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import typer

from ..config import load_config

T = TypeVar("T")

CONFIG_ARG = typer.Argument(..., help="YAML config file (see configs/).", exists=False)
OVERRIDES_ARG = typer.Argument(None, help="Dotted overrides, e.g. train.lr=3e-4 data.root=out/")
RESUME_OPTION = typer.Option(
    None, "--resume", help="'latest' (the run's latest checkpoint, if any), 'best', or a checkpoint path."
)
PROGRESS_OPTION = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")
# The evaluation commands' model and output options.
MODEL_OPTION = typer.Option(None, "--model", help="Model name (ophclip.list_models()) or save_pretrained folder.")
PRETRAINED_OPTION = typer.Option(None, "--pretrained", help="Weights: saved folder or open_clip tag.")
OUT_OPTION = typer.Option(None, "--out", help="Output folder.")


def load_with_overrides(cls: type[T], config: Path | None, overrides: list[str] | None) -> T:
    return load_config(cls, config, overrides or [])
