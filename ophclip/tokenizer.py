"""Tokenizers matching the two kinds of text tower.

* :class:`HFTokenizer` wraps a Hugging Face tokenizer (MiniLM, BioClinicalBERT) and
  returns a dict of tensors (``input_ids``, ``attention_mask``, ...), padded to the
  longest sentence of the call and truncated to the tower's context length.
* :class:`OpenCLIPTokenizer` wraps open_clip's BPE tokenizer (shipped inside
  open_clip, so it works offline) and returns a ``(N, context_length)`` LongTensor.

Both are what ``OphCLIP.encode_text`` takes. Build them through
``ophclip.get_tokenizer(name)``, which caches one instance per model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from open_clip.tokenizer import SimpleTokenizer
from transformers import AutoTokenizer

from .errors import ModelError

logger = logging.getLogger(__name__)


def _as_list(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ModelError(f"tokenizer input {i} is {type(text).__name__}, expected str")
    return texts


class HFTokenizer:
    """Hugging Face tokenizer loaded from a local folder (offline) or a hub id."""

    def __init__(self, source: str | Path, context_length: int):
        self.source = str(source)
        self.context_length = context_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        except OSError as e:
            raise ModelError(
                f"could not load the tokenizer from {self.source!r}: {e}. Give a local folder that holds "
                "tokenizer files (tokenizer.json or vocab.txt), or run with access to the Hugging Face hub"
            ) from None

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            _as_list(texts),
            padding=True,
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return dict(batch)

    def save_pretrained(self, folder: str | Path) -> None:
        self.tokenizer.save_pretrained(str(folder))

    def __repr__(self) -> str:
        return f"HFTokenizer({self.source!r}, context_length={self.context_length})"


class OpenCLIPTokenizer:
    """open_clip's CLIP BPE tokenizer (vocabulary ships with open_clip)."""

    def __init__(self, context_length: int = 77):
        self.context_length = context_length
        self.tokenizer = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        return self.tokenizer(_as_list(texts), context_length=self.context_length)

    def __repr__(self) -> str:
        return f"OpenCLIPTokenizer(context_length={self.context_length})"


Tokenizer = HFTokenizer | OpenCLIPTokenizer
