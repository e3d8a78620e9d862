"""`ophclip synth CONFIG --out DIR [key=value ...]`: generate the synthetic narrated-surgery dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from data_pipeline.synth.config import SynthConfig

from ..config import save_config
from ._common import CONFIG_ARG, OVERRIDES_ARG, load_with_overrides

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        config: Path = CONFIG_ARG,
        overrides: list[str] = OVERRIDES_ARG,
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; existing files are replaced)."),
        preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write contact_sheet.png and "
                                                                         "phase_timeline.png into the folder."),
        root: Path | None = typer.Option(None, "--root", help="Also build a dataset root from the ground truth "
                                                            "(no ASR) in this folder."),
    ) -> None:
        """Generate a synthetic narrated ophthalmic-surgery dataset with ground truth in benchmark formats.

        Example: ophclip synth configs/synth_tiny.yaml --out out/synth_tiny n_silent=4 nuisance.blur_prob=0
        """
        # lazy: CLI start-up time (the generator and the previews pull in pandas, PyAV and matplotlib)
        from data_pipeline.synth import build_root_from_ground_truth, generate_dataset
        from data_pipeline.synth.preview import contact_sheet, phase_timeline

        cfg = load_with_overrides(SynthConfig, config, overrides)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        summary = generate_dataset(cfg, out)
        if preview:
            contact_sheet(out, out / "contact_sheet.png")
            phase_timeline(out, out / "phase_timeline.png")
        if root is not None:
            build_root_from_ground_truth(out, root, workers=cfg.workers)
        print_summary(summary, out)


def print_summary(summary: dict, out: Path) -> None:
    counts = summary["counts"]
    table = Table(title=f"synthetic dataset -> {out}")
    table.add_column("item", style="bold")
    table.add_column("value")
    for key in ("videos", "frames", "duration_s", "sentences", "chatter_sentences", "phase_occurrences", "mb_on_disk"):
        table.add_row(key, str(counts[key]))
    for key in ("by_split", "by_kind", "by_surgery_type"):
        table.add_row(key, ", ".join(f"{k}: {v}" for k, v in counts[key].items()))
    table.add_row("elapsed_s", str(summary.get("elapsed_s")))
    Console().print(table)
