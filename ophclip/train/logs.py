"""Training metrics: TensorBoard scalars and a JSON-lines log, written by rank 0 only.

Each logged step is one JSON object per line in ``<output_dir>/log.jsonl`` and one
scalar per metric under ``<output_dir>/tensorboard/``. On resume from step ``s``, lines
after ``s`` (written by the killed run after its last checkpoint) are removed, and
TensorBoard purges its events after ``s``, so both logs read as one uninterrupted run.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from ophbase.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

JSONL = "log.jsonl"
TENSORBOARD = "tensorboard"


class RunLogger:
    def __init__(
        self,
        output_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        jsonl: bool = True,
        resume_step: int | None = None,
    ):
        self.enabled = enabled
        self.jsonl_path = Path(output_dir) / JSONL if (enabled and jsonl) else None
        self.writer = None
        if not enabled:
            return
        if self.jsonl_path is not None:
            if resume_step is None:
                atomic_write_text(self.jsonl_path, "")
            else:
                _truncate_after(self.jsonl_path, resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional, and slow to import

            self.writer = SummaryWriter(str(Path(output_dir) / TENSORBOARD), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` (numbers and strings) at ``step``; non-numbers go to the JSONL only."""
        if not self.enabled:
            return
        if self.jsonl_path is not None:
            record = {"step": step, **{k: _json_value(v) for k, v in metrics.items()}}
            with open(self.jsonl_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut off by the kill
    atomic_write_text(path, "".join(s + "\n" for s in kept))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log (for reports and tests)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def loss_curve(log_path: str | Path, png_path: str | Path, title: str = "pretraining loss") -> Path:
    """Plot ``loss/<level>`` of a run's ``log.jsonl`` against the step into a PNG (written atomically).

    Uses matplotlib's object API (no pyplot), so it works headless and leaves the backend alone.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.5 s, and only the plot needs it

    records = read_log(log_path)
    levels = sorted({k for r in records for k in r if k.startswith("loss/") and k.count("/") == 1})
    if not levels:
        raise ValueError(f"{log_path}: no loss/<level> entries to plot")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for key in levels:
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None, label=key[5:])
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="level")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(png_path, buf.getvalue())
    return Path(png_path)
