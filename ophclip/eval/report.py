"""Markdown reports of evaluation results: ``report.md`` of a zero-shot run, ``probe.md`` of a probe.

They read only the metrics dicts (:func:`ophclip.eval.run.run_zero_shot`,
:func:`ophclip.eval.probe.linear_probe`), so a saved ``metrics.json`` renders the same.
"""

from __future__ import annotations

import math

from .probe import HEADLINE


def _fmt(value: float, ci: list | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def markdown_report(result: dict) -> str:
    """A Markdown summary of :func:`run_zero_shot`'s metrics, chance beside each number."""
    lines = [f"# Zero-shot evaluation: {result['benchmark']}", "",
             f"{result['n_videos']} videos, {result['n_frames']} frames at {result['eval_fps']} fps; "
             f"{result['throughput_frames_per_s']:.1f} frames/s.", ""]
    if "phase" in result:
        p, c = result["phase"], result["phase"]["chance"]
        lines += ["## Phase recognition", "", "| metric | value [95% CI, videos resampled] | random guess |",
                  "|---|---|---|",
                  f"| accuracy, mean over videos | {_fmt(p['video_accuracy'], p.get('video_accuracy_ci'))} | {_fmt(c['random_video_accuracy'])} |",
                  f"| macro-F1, mean over videos | {_fmt(p['video_f1'], p.get('video_f1_ci'))} | {_fmt(c['random_video_f1'])} |",
                  f"| accuracy, pooled frames | {_fmt(p['pooled_accuracy'], p.get('pooled_accuracy_ci'))} | {_fmt(c['random_pooled_accuracy'])} |",
                  f"| macro-F1, pooled frames | {_fmt(p['pooled_f1'], p.get('pooled_f1_ci'))} | {_fmt(c['random_pooled_f1'])} |",
                  "", f"Chance: uniform {c['uniform_accuracy']:.3f}, majority class {c['majority_accuracy']:.3f}.", ""]  # fmt: skip
    if "tools" in result:
        t = result["tools"]
        lines += ["## Instrument recognition", "",
                  f"mAP {_fmt(t['mAP'])} (chance {_fmt(t['chance']['mAP'])}); FPR at threshold {t['threshold']} "
                  f"= {_fmt(t['fpr'])} ({t['scoring']} scores).", "",
                  "mAP by scoring: " + ", ".join(f"{k} {_fmt(v)}" for k, v in t.get("mAP_by_scoring", {}).items()),
                  "", "| tool | AP | FPR | positive frames |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {_fmt(v['ap'])} | {_fmt(v['fpr'])} | {v['n_positive']} |" for n, v in t["per_tool"].items()]
        lines.append("")
    if "surgery_type" in result:
        s = result["surgery_type"]
        body = ", ".join(f"{k} {_fmt(v)}" for k, v in s.items() if isinstance(v, float))
        lines += ["## Surgery type (per video)", "", f"{body}; chance {s['chance']['uniform_accuracy']:.3f}.", ""]
    if "retrieval" in result:
        r = result["retrieval"]
        lines += ["## Retrieval", "", "| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
        for d in ("text_to_video", "video_to_text"):
            lines.append(f"| {d.replace('_', ' ')} | " + " | ".join(_fmt(r[d][k]) for k in ("R@1", "R@5", "R@10")) + " |")
        lines += ["", f"{r['n_pairs']} pairs; chance R@1 {r['chance_R@1']:.3f}.", ""]
    return "\n".join(lines)


def probe_markdown(result: dict) -> str:
    lines = ["# Linear probe (few-shot by video)", "",
             f"{result['n_train_videos']} training videos, {result['n_test_videos']} test videos; mean ± std over seeds.",
             "", "| training videos | accuracy (per video) | macro-F1 (per video) | accuracy (pooled) | macro-F1 (pooled) |",
             "|---|---|---|---|---|"]
    for frac, r in result["fractions"].items():
        n = r["runs"][0]["n_videos"]
        cells = " | ".join(f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" for k in HEADLINE)
        lines.append(f"| {float(frac) * 100:g}% ({n}) | {cells} |")
    if "knn" in result:
        knn = result["knn"]
        lines.append(f"| kNN (k={knn['k']}), all training frames | " + " | ".join(f"{knn[k]:.3f}" for k in HEADLINE) + " |")
    return "\n".join(lines) + "\n"

