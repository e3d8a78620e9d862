"""Render the README's generated results from the benchmark JSON files.

    python -m benchmarks.results_readme                 # print the Markdown
    python -m benchmarks.results_readme --write README.md

``--write`` replaces what lies between ``<!-- results:start -->`` and ``<!-- results:end -->``.
Each table comes from one JSON file in ``benchmarks/results/`` and is skipped when that file is
absent, so the section only ever shows numbers that a benchmark wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(m: dict) -> str:
    lo, hi = m["load_average_at_start"][0], m["load_average_at_end"][0]
    return (f"{m['cpu_model']}, {m['cpus']} cores, torch {m['torch']}, {m['torch_threads']} thread(s), "
            f"Python {m['python']}; load average {lo:.1f} at the start and {hi:.1f} at the end")


def ablation_section(d: dict) -> list[str]:
    # lazy: a section's script is imported only when its results file exists (they import torch and pandas)
    from benchmarks.ablation import VARIANTS, markdown

    seeds = sorted({r["seed"] for r in d["rows"]})
    steps = sorted({r["steps"] for r in d["rows"]})
    # The ablation's own order (the JSON's keys are sorted), then any extra variants.
    order = [v for v in VARIANTS if v in d["table"]] + [v for v in d["table"] if v not in VARIANTS]
    table = {v: d["table"][v] for v in order}
    conditions = f" {d['conditions']}." if d.get("conditions") else ""
    command = f" Reproduce (runs are cached; `--cached-only` re-tabulates): `{d['command']}`." if d.get("command") else ""
    return [f"### Ablation (`python -m benchmarks.ablation`), {d.get('title', 'first wave')}", "",
            f"Demo config with each row's overrides (`VARIANTS` in `benchmarks/ablation.py`; rows without \"CNN\" or "
            f"\"ImageNet\" use the tiny ViT), {'/'.join(map(str, steps))} steps, seeds {seeds}, 12 held-out synthetic "
            f"videos; mean ± std over the seeds each variant has.{conditions} Tabulated {d['finished']} on "
            f"{d['processor'] or d['machine']}; `train s` is wall time on a machine shared with other runs.{command}", "",
            markdown(table, d["chance"]).rstrip(), ""]


def ceiling_section(d: dict) -> list[str]:
    """Supervised ceiling: each row is one (model, steps) over its seeds."""
    lines = ["### Supervised ceiling (`python -m benchmarks.phase_ceiling`)", "",
             f"The vision tower trained *with the true phase labels* ({d['protocol']}): what zero-shot could reach "
             f"at most from the same frames and steps. {machine_line(d['machine'])}.", "",
             "| vision tower of | steps | seeds | phase acc. (27 classes) | phase acc., surgery type known | train s |",
             "|---|---|---|---|---|---|"]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in d["runs"]:
        groups.setdefault((r["model"], r["steps"]), []).append(r)
    for (model, steps), runs in groups.items():
        acc = [r["phase_accuracy"] for r in runs]
        known = [r["phase_accuracy_surgery_known"] for r in runs]
        lines.append(f"| {model} | {steps} | {len(runs)} | {_mean_std(acc)} | {_mean_std(known)} "
                     f"| {sum(r['train_s'] for r in runs) / len(runs):.0f} |")
    return lines + [""]


def ssl_probe_section(d: dict) -> list[str]:
    from benchmarks.ssl_probe import markdown  # lazy: as in ablation_section

    tower = f" ({d['model_name']})" if d.get("model_name") else ""
    return [f"### Frozen features of the vision tower{tower} (`python -m benchmarks.ssl_probe`)", "", d["protocol"] + ".", "",
            *markdown(d["rows"]).splitlines(), ""]


def tower_probe_section(d: dict) -> list[str]:
    from benchmarks.tower_probe import markdown  # lazy: as in ablation_section

    command = d.get("command", "python -m benchmarks.tower_probe")
    return ["### Linear probe of the EfficientNet-Lite0 tower (`python -m benchmarks.tower_probe`)", "",
            f"{d['protocol']}; random and ImageNet rows at {d['image_size']} px. `embedding` is the normalised "
            "image embedding zero-shot uses (a random projection for the first two rows); `trunk` the pooled "
            f"1280-d features before it. Reproduce: `{command}`.", "",
            *markdown({label: d["rows"][label] for label in d.get("order", d["rows"])}).splitlines(), ""]


def _mean_std(values: list[float]) -> str:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return f"{mean:.3f} ± {std:.3f}"


def train_step_section(d: dict) -> list[str]:
    lines = ["### Training step (`python -m benchmarks.perf_train_step`)", "", machine_line(d["machine"]) + ".", "",
             "| model | variant | batch × frames | step ms | clips/s | GFLOP/step | MFU % |", "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} × {r['frames']} | {r['step_ms']:.0f} "
                     f"| {r['clips_per_s']:.2f} | {r['gflop_per_step']:.1f} | {r['mfu_pct']:.0f} |")
    lines += ["", "| side by side | ratio |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in d["ratios"].items()]
    return lines + [""]


def data_section(d: dict) -> list[str]:
    lines = ["### Data loading (`python -m benchmarks.perf_data`)", "", machine_line(d["machine"]) + ".", "",
             "| source | frames/s | × what the trainer consumes |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['frames_per_s']:.0f} | {r['x_consumption']:.2f} |" for r in d["rows"]]
    return lines + [""]


def pipeline_section(d: dict) -> list[str]:
    lines = ["### Pipeline (`python -m benchmarks.perf_pipeline`)", "", machine_line(d["machine"]) + ".", "",
             "| ASR backend | status | audio s | real-time factor | WER |", "|---|---|---|---|---|"]
    for r in d["asr"]["rows"]:
        rtf = f"{r['rtf']:.3f}" if r.get("rtf") is not None else "—"
        wer = f"{r['wer']:.3f}" if r.get("wer") is not None else "—"
        lines.append(f"| {r['backend']} | {r['status']} | {r['audio_s']:.1f} | {rtf} | {wer} |")
    return lines + rewrite_lines(d.get("rewrite", {})) + [""]


def rewrite_lines(rewrite: dict) -> list[str]:
    """The rewrite backends' rows (one row in reports written before backends were compared side by side)."""
    rows = rewrite.get("rows") or ([rewrite["row"]] if "row" in rewrite else [])
    if not rows:
        return []
    lines = ["", "| rewrite backend | batch | narrations | clips/s | tokens/s | load s | x first row |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        tokens = f"{r['tokens_per_s']:.1f}" if r.get("tokens_per_s") else "—"
        lines.append(f"| {r['model']} | {r.get('batch_size', 1)} | {r['narrations']} | {r['clips_per_s']:.3f} | {tokens} "
                     f"| {r['load_s']:.1f} | {r.get('x_first', 1.0):.1f} |")
    return lines


def rewrite_section(d: dict) -> list[str]:
    c = d["config"]
    return (["### Rewrite backends (`python -m benchmarks.perf_pipeline --skip-asr --llm-backend ...`)", "",
             machine_line(d["machine"]) + f"; median of {c['rewrite_reps']} reps, measured side by side in one run. "
             "A ctranslate2 load includes its one-time conversion when its cache is empty, as here."]
            + rewrite_lines(d["rewrite"]) + [""])


def bank_section(d: dict) -> list[str]:
    c, m = d["config"], d["machine"]
    batch = next(k for k in d["rows"][0] if k.startswith("batch") and k.endswith("_ms"))
    lines = ["### Memory bank (`python -m benchmarks.perf_bank`)", "",
             f"{c['queries']:,} queries, top-{c['k']}, {c['dim']} dims, clustered data; faiss {d['versions']['faiss']}, "
             f"{m['faiss_threads']} faiss thread(s); load average {d['load_average_at_end'][0]:.1f} at the end. "
             f"Step share: one training batch of {batch[5:-3]} queries against a {c['step_ms']:.0f} ms training step.", "",
             "| bank | method | setting | build s | search s | recall@k | per training batch ms | share of a step % |",
             "|---|---|---|---|---|---|---|---|"]
    recall = f"recall@{c['k']}"
    for r in d["rows"]:
        if r.get("table") == "search":
            lines.append(f"| {r['n']:,} | {r['method']} | {r['setting']} | {r['build_s']:.1f} | {r['search_s']:.2f} "
                         f"| {r[recall]:.4f} | {r[batch]:.1f} | {r['step_share_pct']:.2f} |")
    return lines + [""]


def render(results: Path) -> str:
    out = ["_Generated by `python -m benchmarks.results_readme --write README.md` from `benchmarks/results/*.json`._", ""]
    probes = sorted(str(p.relative_to(results)) for p in results.glob("ssl_probe*/ssl_probe.json"))
    ablations = sorted(str(p.relative_to(results)) for p in results.glob("ablation*/ablation.json"))
    for name, section in (("ablation.json", ablation_section), *((a, ablation_section) for a in ablations), ("phase_ceiling/phase_ceiling.json", ceiling_section),
                          ("tower_probe/tower_probe.json", tower_probe_section),
                          *((probe, ssl_probe_section) for probe in probes), ("perf_train_step.json", train_step_section),
                          ("perf_data.json", data_section), ("perf_pipeline.json", pipeline_section),
                          ("perf_pipeline_rewrite.json", rewrite_section),
                          ("perf_bank.json", bank_section)):
        d = _load(results, name)
        if d is not None:
            out += section(d)
    return "\n".join(out).rstrip() + "\n"


def write_into(readme: Path, body: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: add the markers {START} and {END} where the results go")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body}{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--write", type=Path, default=None, help="README to update in place")
    args = p.parse_args(argv)
    body = render(args.results)
    if args.write:
        write_into(args.write, body)
    else:
        print(body)


if __name__ == "__main__":
    main()
