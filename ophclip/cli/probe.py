"""`ophclip probe`: linear probe of frozen frame features, few-shot by video.

    ophclip probe configs/eval_probe_synthetic.yaml --model runs/pretrain/final --out runs/probe

Training videos are the ``train_split`` videos (synthetic: narrated_pretrain), test
videos the ``benchmark.split`` ones; a benchmark without splits (Cataract-101) is
split at random by video with ``test_fraction`` and the probe seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown

from ._common import MODEL_OPTION, OUT_OPTION, OVERRIDES_ARG, PRETRAINED_OPTION, load_with_overrides

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command()
    def probe(
        config: Path = typer.Argument(None, help="YAML config (configs/eval_probe_*.yaml); optional."),
        overrides: list[str] = OVERRIDES_ARG,
        model: str = MODEL_OPTION,
        pretrained: str = PRETRAINED_OPTION,
        out: Path = OUT_OPTION,
    ) -> None:
        """Linear probe (logistic regression) on frozen features with 1%/10%/100% of training videos."""
        # lazy: CLI start-up time (the probe pulls in torch, scikit-learn and pandas)
        from ..eval.config import ProbeConfig
        from ..eval.report import probe_markdown
        from ..eval.run import run_probe

        cfg = load_with_overrides(ProbeConfig, config, overrides)
        if model is not None:
            cfg.model.name = model
        if pretrained is not None:
            cfg.model.pretrained = pretrained
        if out is not None:
            cfg.out = str(out)
        result = run_probe(cfg)
        Console().print(Markdown(probe_markdown(result)))
