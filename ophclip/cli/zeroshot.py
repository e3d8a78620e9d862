"""`ophclip zeroshot`: zero-shot phase / tool / surgery-type evaluation with your prompts.

    ophclip zeroshot configs/eval_synthetic.yaml --prompts my.yaml --model runs/pretrain/final --out runs/zs
    ophclip zeroshot --benchmark cataract101 --root data/cataract-101 --prompts my.yaml --out runs/c101
    ophclip zeroshot configs/eval_synthetic.yaml eval.smoothing_window=5 eval.fps=2

Command-line options override the config file, which overrides the defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._common import MODEL_OPTION, OUT_OPTION, OVERRIDES_ARG, PRETRAINED_OPTION, load_with_overrides

logger = logging.getLogger(__name__)


def apply_cli_options(cfg, **options) -> None:
    """Set the config fields the user gave on the command line (None means not given)."""
    if options.get("prompts") is not None:
        cfg.prompts = str(options["prompts"])
    if options.get("model") is not None:
        cfg.model.name = str(options["model"])
    if options.get("pretrained") is not None:
        cfg.model.pretrained = str(options["pretrained"])
    if options.get("out") is not None:
        cfg.out = str(options["out"])
    if options.get("benchmark") is not None:
        cfg.benchmark.name = options["benchmark"]
    if options.get("root") is not None:
        cfg.benchmark.root = str(options["root"])
    if options.get("split") is not None:
        cfg.benchmark.split = options["split"]
    if options.get("fps") is not None:
        cfg.eval.fps = options["fps"]
    if options.get("max_videos") is not None:
        cfg.eval.max_videos = options["max_videos"]


def register(app: typer.Typer) -> None:
    @app.command()
    def zeroshot(
        config: Path = typer.Argument(None, help="YAML config (configs/eval_*.yaml); optional."),
        overrides: list[str] = OVERRIDES_ARG,
        prompts: Path = typer.Option(None, "--prompts", help="Prompt YAML, or a shipped one by name (ophclip/prompts/)."),
        model: str = MODEL_OPTION,
        pretrained: str = PRETRAINED_OPTION,
        out: Path = OUT_OPTION,
        benchmark: str = typer.Option(None, "--benchmark", help="synthetic, cataract101, cataracts, ophnet, ..."),
        root: Path = typer.Option(None, "--root", help="Benchmark dataset folder (or file)."),
        split: str = typer.Option(None, "--split", help="Evaluate only this split."),
        fps: float = typer.Option(None, "--fps", help="Frames per second evaluated."),
        max_videos: int = typer.Option(None, "--max-videos", help="Evaluate the first N videos only."),
    ) -> None:
        """Zero-shot phase, instrument and surgery-type recognition; writes metrics, a report and plots."""
        # lazy: CLI start-up time (the evaluation pulls in torch, scikit-learn, pandas and matplotlib)
        from ..eval.config import ZeroShotConfig
        from ..eval.run import run_zeroshot_config

        cfg = load_with_overrides(ZeroShotConfig, config, overrides)
        apply_cli_options(cfg, prompts=prompts, model=model, pretrained=pretrained, out=out, benchmark=benchmark,
                          root=root, split=split, fps=fps, max_videos=max_videos)
        result = run_zeroshot_config(cfg)
        out_dir = Path(cfg.out)
        table = Table(title=f"zero-shot: {result['benchmark']} ({result['n_videos']} videos)")
        table.add_column("task")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("chance", justify="right")
        if "phase" in result:
            p = result["phase"]
            for key, label in (("video_accuracy", "accuracy (per video)"), ("video_f1", "macro-F1 (per video)"),
                               ("pooled_accuracy", "accuracy (pooled)"), ("pooled_f1", "macro-F1 (pooled)")):
                table.add_row("phase", label, f"{p[key]:.3f}", f"{p['chance']['random_' + key]:.3f}")
        if "tools" in result:
            t = result["tools"]
            table.add_row("tools", "mAP", f"{t['mAP']:.3f}", f"{t['chance']['mAP']:.3f}")
            table.add_row("tools", f"FPR @ {t['threshold']}", f"{t['fpr']:.3f}", "")
        if "surgery_type" in result:
            s = result["surgery_type"]
            key = "accuracy" if "accuracy" in s else "top1_accuracy"
            table.add_row("surgery type", key, f"{s[key]:.3f}", f"{s['chance']['uniform_accuracy']:.3f}")
        if "retrieval" in result:
            r = result["retrieval"]
            table.add_row("retrieval", "text->video R@1", f"{r['text_to_video']['R@1']:.3f}", f"{r['chance_R@1']:.3f}")
        Console().print(table)
        Console().print(f"report: {out_dir / 'report.md'}")
