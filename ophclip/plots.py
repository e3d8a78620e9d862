"""Report figures (files written atomically).

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), not
pyplot, so importing this module never changes the user's backend and works headless.

* :func:`phase_ribbon`: one video's ground truth above its prediction over time.
* :func:`confusion_matrix_plot`: row-normalised confusion matrix with class names.
* :func:`tool_ap_bars`: per-tool average precision, mAP as a line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ophbase.io import atomic_path

logger = logging.getLogger(__name__)

UNLABELLED_COLOR = (0.85, 0.85, 0.85, 1.0)


def _save(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format from the extension
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def _class_colors(n: int) -> np.ndarray:
    cmap = matplotlib.colormaps["tab20" if n > 10 else "tab10"]
    return np.array([cmap(i % cmap.N) for i in range(n)])


def phase_ribbon(
    times_s: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Two colour ribbons over time (truth, prediction); -1 (unlabelled) is grey."""
    colors = np.vstack([_class_colors(len(class_names)), UNLABELLED_COLOR])
    cmap = ListedColormap(colors)
    unl = len(class_names)
    rows = np.vstack([np.where(truth >= 0, truth, unl), np.where(prediction >= 0, prediction, unl)])
    t_end = float(times_s[-1]) if len(times_s) else 1.0
    step = float(np.median(np.diff(times_s))) if len(times_s) > 1 else 1.0
    fig = Figure(figsize=(10, 2.2))
    ax = fig.subplots()
    ax.imshow(rows, aspect="auto", cmap=cmap, vmin=0, vmax=unl, interpolation="nearest",
              extent=(float(times_s[0]) if len(times_s) else 0.0, t_end + step, 1.5, -0.5))
    ax.set_yticks([0, 1], ["ground truth", "prediction"])
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title)
    used = sorted(set(rows.ravel().tolist()) - {unl})
    handles = [Patch(color=colors[i], label=class_names[i]) for i in used]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return _save(fig, path)


def confusion_matrix_plot(matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Rows are ground truth, normalised to sum to 1 (empty rows stay 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def tool_ap_bars(per_tool: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Bars of per-tool AP (tools without positives are listed as 'n/a'), mAP as a dashed line."""
    names = list(per_tool)
    aps = np.array([per_tool[n]["ap"] for n in names], dtype=np.float64)
    fig = Figure(figsize=(max(5.0, 0.4 * len(names) + 2), 3.5))
    ax = fig.subplots()
    ax.bar(range(len(names)), np.nan_to_num(aps), color="tab:blue")
    for i, ap in enumerate(aps):
        if np.isnan(ap):
            ax.text(i, 0.02, "n/a", ha="center", fontsize=6, rotation=90)
    if np.isfinite(aps).any():
        ax.axhline(float(np.nanmean(aps)), color="tab:red", linestyle="--", label=f"mAP {np.nanmean(aps):.3f}")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("average precision")
    if title:
        ax.set_title(title)
    return _save(fig, path)
