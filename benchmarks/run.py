"""Run an evaluation end to end: load the benchmark and the model, evaluate, write the results.

``ophclip zeroshot``, ``ophclip probe`` and ``ophclip demo`` all call these, so the
command line and the Python API produce the same files.
"""

from __future__ import annotations

from pathlib import Path


def load_model(ref):
    """(model, preprocess_eval, tokenizer) on the configured device."""
    import ophclip
    from ophclip.evaluate import resolve_device

    model, _, preprocess = ophclip.create_model_and_transforms(ref.name, pretrained=ref.pretrained,
                                                              device=resolve_device(ref.device))
    tokenizer = ophclip.get_tokenizer(ref.name)
    return model, preprocess, tokenizer


def write_run_record(out: Path, cfg, counts: dict) -> None:
    """``config.yaml`` (resolved) and ``run.json`` (versions, seed, model, counts) beside the results."""
    import importlib.metadata
    import platform

    from data_pipeline._io import atomic_write_json
    from ophclip.config import save_config, to_dict

    save_config(cfg, out / "config.yaml")
    versions = {"python": platform.python_version()}
    for dist in ("ophclip", "torch", "open_clip_torch", "transformers", "scikit-learn", "av"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    atomic_write_json(out / "run.json", {"config": to_dict(cfg), "versions": versions, "counts": counts})


def run_zeroshot_config(cfg, progress: bool = True) -> dict:
    """Everything `ophclip zeroshot` does after parsing: load, evaluate, write; returns the metrics.

    ``ophclip demo`` calls this with a :class:`~ophclip.evaluate.ZeroShotConfig` for the
    held-out synthetic videos.
    """
    from ophclip.evaluate import run_zero_shot
    from ophclip.prompts import load_prompt_file

    from .adapters.loader import load_benchmark, resolve_prompt_file

    cfg.prompts = str(resolve_prompt_file(cfg.prompts))
    # Validate the prompt file before loading any model, so a typo costs no time.
    load_prompt_file(cfg.prompts)
    bench = load_benchmark(cfg.benchmark)
    net, preprocess, tokenizer = load_model(cfg.model)
    out_dir = Path(cfg.out)
    result = run_zero_shot(net, preprocess, tokenizer, bench.source, cfg.prompts, out_dir, phases=bench.phases,
                           tools=bench.tools, surgery=bench.surgery,
                           retrieval_texts=bench.retrieval_texts if cfg.retrieval else None, opts=cfg.eval,
                           progress=progress)
    write_run_record(out_dir, cfg, {"videos": result["n_videos"], "frames": result["n_frames"],
                                    "throughput_frames_per_s": result["throughput_frames_per_s"]})
    return result


def run_probe(cfg, progress: bool = True, model_and_preprocess=None) -> dict:
    """Embed train and test videos once, then fit the probes; writes probe.json and probe.md.

    ``model_and_preprocess`` replaces loading ``cfg.model`` (a benchmark probing another feature of a model).
    """
    import dataclasses

    from data_pipeline._io import atomic_write_json, atomic_write_text
    from ophclip.evaluate import embed_videos
    from ophclip.probe import FeatureSet, linear_probe, probe_markdown

    from .adapters.loader import load_benchmark, split_videos

    test_bench = load_benchmark(cfg.benchmark)
    if cfg.train_split is not None:
        train_bench = load_benchmark(dataclasses.replace(cfg.benchmark, split=cfg.train_split))
        train_ids, test_ids = train_bench.phases.video_ids, test_bench.phases.video_ids
    else:
        train_bench = test_bench
        train_ids, test_ids = split_videos(test_bench.phases, cfg.test_fraction, cfg.split_seed)
    model, preprocess = model_and_preprocess or load_model(cfg.model)[:2]
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
