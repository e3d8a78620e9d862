"""`ophclip probe`: linear probe of frozen frame features, few-shot by video.

    ophclip probe configs/eval_probe_synthetic.yaml --model runs/pretrain/final --out runs/probe

Training videos are the ``train_split`` videos (synthetic: narrated_pretrain), test
videos the ``benchmark.split`` ones; a benchmark without splits (Cataract-101) is
split at random by video with ``test_fraction`` and the probe seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import typer

from ..evaluate import BenchmarkConfig, EvalOptions, ModelRef
from ..probe import ProbeOptions

logger = logging.getLogger(__name__)


@dataclass
class ProbeConfig:
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    model: ModelRef = field(default_factory=ModelRef)
    train_split: str | None = None  # None: random by-video split of the benchmark.split videos
    test_fraction: float = 0.3
    split_seed: int = 0
    out: str = "runs/probe"
    eval: EvalOptions = field(default_factory=EvalOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)


def run_probe(cfg: ProbeConfig, progress: bool = True) -> dict:
    """Embed train and test videos once, then fit the probes; writes probe.json and probe.md."""
    import dataclasses

    from benchmarks.adapters.loader import load_benchmark, split_videos
    from data_pipeline._io import atomic_write_json, atomic_write_text

    from ..evaluate import embed_videos
    from ..probe import FeatureSet, linear_probe, probe_markdown
    from .zeroshot import load_model, write_run_record

    test_bench = load_benchmark(cfg.benchmark)
    if cfg.train_split is not None:
        train_bench = load_benchmark(dataclasses.replace(cfg.benchmark, split=cfg.train_split))
        train_ids, test_ids = train_bench.phases.video_ids, test_bench.phases.video_ids
    else:
        train_bench = test_bench
        train_ids, test_ids = split_videos(test_bench.phases, cfg.test_fraction, cfg.split_seed)
    model, preprocess, _ = load_model(cfg.model)
    o = cfg.eval
    train_emb = embed_videos(model, preprocess, train_bench.source, train_bench.phases, o.fps, o.batch_size,
                             o.video_frames, train_ids, progress)
    test_emb = embed_videos(model, preprocess, test_bench.source, test_bench.phases, o.fps, o.batch_size,
                            o.video_frames, test_ids, progress)
    result = linear_probe(FeatureSet.from_embeddings(train_emb, train_bench.phases),
                          FeatureSet.from_embeddings(test_emb, test_bench.phases), cfg.probe)
    result["benchmark"] = test_bench.phases.name
    out = Path(cfg.out)
    atomic_write_json(out / "probe.json", result)
    atomic_write_text(out / "probe.md", probe_markdown(result))
    write_run_record(out, cfg, {"train_videos": len(train_ids), "test_videos": len(test_ids),
                                "train_frames": train_emb.n_frames, "test_frames": test_emb.n_frames})
    return result


def register(app: typer.Typer) -> None:
    from ._common import OVERRIDES_ARG

    @app.command()
    def probe(
        config: Path = typer.Argument(None, help="YAML config (configs/eval_probe_*.yaml); optional."),
        overrides: list[str] = OVERRIDES_ARG,
        model: str = typer.Option(None, "--model", help="Model name or save_pretrained folder."),
        pretrained: str = typer.Option(None, "--pretrained", help="Weights: saved folder or open_clip tag."),
        out: Path = typer.Option(None, "--out", help="Output folder."),
    ) -> None:
        """Linear probe (logistic regression) on frozen features with 1%/10%/100% of training videos."""
        from rich.console import Console
        from rich.markdown import Markdown

        from ..probe import probe_markdown
        from ._common import load_with_overrides

        cfg = load_with_overrides(ProbeConfig, config, overrides)
        if model is not None:
            cfg.model.name = model
        if pretrained is not None:
            cfg.model.pretrained = pretrained
        if out is not None:
            cfg.out = str(out)
        result = run_probe(cfg)
        Console().print(Markdown(probe_markdown(result)))
