"""Machine facts and small timing helpers shared by the ``benchmarks.perf_*`` scripts.

    facts = machine_facts()            # at the start of a run: CPU model, cores, versions, load average
    finish_machine_facts(facts)        # at the end: the load average again

Timings on a shared machine mean little without the load average: it says how much
else was running while the numbers were taken.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from ophbase.io import atomic_write_json, atomic_write_text


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    """CPU, cores, torch version and threads, platform and the 1/5/15-min load average now."""
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def finish_machine_facts(facts: dict[str, Any]) -> dict[str, Any]:
    facts["load_average_at_end"] = list(os.getloadavg())
    return facts


def command_line(module: str, argv: list[str] | None, drop: tuple[str, ...] = ()) -> str:
    """The shell command that reproduces this run of ``python -m module`` (``argv`` as ``main`` got it), minus ``drop``."""
    args = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in drop]
    return shlex.join(["python", "-m", module, *args])


def write_json(report: dict[str, Any], out: str | Path) -> Path:
    """Write ``report`` to ``out`` atomically, keys in the report's own order (not sorted)."""
    return atomic_write_text(out, json.dumps(report, indent=2, default=str) + "\n")


def write_results(out_dir: Path, name: str, result: dict[str, Any], md: str) -> dict[str, Any]:
    """``<out_dir>/<name>.json`` and ``<name>.md`` (atomically), the table printed: every benchmark's ending."""
    atomic_write_json(Path(out_dir) / f"{name}.json", result)
    atomic_write_text(Path(out_dir) / f"{name}.md", md)
    print(md)
    return result


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (floats with 4 significant digits)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
