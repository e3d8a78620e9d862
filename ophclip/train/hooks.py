"""The retrieval hook: where a memory bank of silent videos plugs into the video level.

The trainer calls, on every video-level step,

    hook.maybe_refresh(step, model)                 # re-encode / rebuild the bank when due
    hook.neighbours(video_ids, video_emb)           # -> (emb (B, K, D), scores (B, K)) or None

``video_emb`` is the batch's (detached, normalised) video embeddings on this rank. The
result is handed to the loss as constants. ``None`` means "no neighbours this step" and
the retrieval term is skipped.

Optional: with ``loss.retrieval_mode: soft_positive``, a hook that also has
``neighbour_embeddings_with_grad(encode) -> (B, K, D) | None`` gets called right after
``neighbours``; ``encode`` maps frames ``(N, T, 3, S, S)`` to normalised embeddings with
gradient, so the neighbours' own pixels train the vision tower too.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import torch

logger = logging.getLogger(__name__)


@runtime_checkable
class RetrievalHook(Protocol):
    def maybe_refresh(self, step: int, model: torch.nn.Module) -> None: ...

    def neighbours(self, video_ids: list[str], video_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None: ...


class NoRetrieval:
    """The default: no memory bank."""

    def maybe_refresh(self, step: int, model: torch.nn.Module) -> None:
        return None

    def neighbours(self, video_ids: list[str], video_emb: torch.Tensor) -> None:
        return None
