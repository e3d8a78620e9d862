"""Hierarchical contrastive losses, one flag-driven module in open_clip's style.

Terms (each returned by name, plus ``total`` = weighted sum):

* ``clip`` — symmetric InfoNCE between clip embeddings and their narration text.
  ``repeated_text`` chooses what an identical sentence elsewhere in the batch is
  (pass ``text_ids``: equal id = identical sentence): ``"negative"`` (plain CLIP),
  ``"ignore"`` (removed from the softmax; DESIGN.md notes repeated narrations hurt),
  or ``"positive"`` (the target is spread uniformly over all pairs with that sentence).
  ``text_target_temperature`` > 0 replaces the one-hot targets by soft ones,
  ``softmax(t_i . t_j / temperature)`` over the batch's narrations: two clips whose
  narrations say the same thing (the same step, in other words) are no longer pushed
  apart as negatives. The text tower is frozen in OphCLIP, so the targets are fixed
  by the sentences; identical sentences share the target, which makes ``repeated_text``
  moot.
* ``frame_text`` (``frame_text_weight`` > 0, given the clip's per-frame embeddings) — each
  frame of a clip on its own against the batch's narrations (frame -> text cross-entropy,
  the clip's narration is the target, soft targets as for ``clip``). Zero-shot recognition
  scores single frames; this term trains the frames themselves, not only their mean, and
  gives T times the rows for the same forward pass.
* ``video_title`` — symmetric InfoNCE between video embeddings and title-summary text.
* ``video_narration`` — symmetric InfoNCE between video embeddings and the mean of
  their narration embeddings (:func:`mean_text_per_video`).
* ``retrieval`` — the memory-bank hook. The loss takes the retrieved neighbour
  embeddings ``(B, K, D)`` and their search scores ``(B, K)`` (a missing neighbour has
  score ``-inf``, or faiss's ``-FLT_MAX``); ``w = softmax(scores / temperature)``
  over the K neighbours. Its settings are the ``retrieval:`` section
  (:class:`ophclip.memory.RetrievalCfg`), passed as ``HierarchicalLoss(..., retrieval=...)``;
  ``mode``:

  - ``"soft_positive"``: for each title, its neighbours are positives with target
    weights ``w``, against the other videos of the (global) batch as negatives; the
    title's own video is left out (``video_title`` already pulls it in).
  - ``"feature_aug"``: the video embedding is mixed with the ``w``-weighted mean of its
    neighbours, ``normalize((1 - mix) * v + mix * sum_k w_k n_k)``,
    and contrasted with the titles (symmetric InfoNCE).
  - ``"off"``: no retrieval term.

All features must already be L2-normalised (``encode_*(normalize=True)``);
``logit_scale`` is the multiplier (``model.get_logit_scale()``), not its log.

Across ranks, features are gathered inside the loss (:func:`gather_features`). With
``gather_with_grad=True`` (default) the gather is ``torch.distributed.nn.functional.all_gather``,
whose backward sums the gradients of every rank, so after DDP averages parameter
gradients they equal a single-process run over the global batch. ``local_loss=True``
computes only the local rows against all columns (labels offset by rank): less
compute, same gradients; the per-rank loss values then average to the global loss.
Every rank must pass the same batch size (use ``drop_last``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from .errors import ModelError
from .memory import RetrievalCfg

logger = logging.getLogger(__name__)

REPEATED_TEXT_MODES = ("negative", "ignore", "positive")


@dataclass
class LossCfg:
    """Weights and switches of :class:`HierarchicalLoss`; data only, so a run config can hold it."""

    clip_weight: float = 1.0
    video_title_weight: float = 1.0
    video_narration_weight: float = 0.5
    repeated_text: str = "ignore"
    text_target_temperature: float = 0.0  # > 0: clip-level soft targets from narration similarity (0: one-hot)
    frame_text_weight: float = 0.0  # > 0: adds the per-frame frame -> narration term at the clip level
    local_loss: bool = False
    gather_with_grad: bool = True

    def validate(self) -> None:
        if self.repeated_text not in REPEATED_TEXT_MODES:
            raise ModelError(
                f"loss.repeated_text must be one of {REPEATED_TEXT_MODES}, got {self.repeated_text!r}"
            )
        if self.text_target_temperature < 0:
            raise ModelError(f"loss.text_target_temperature must be >= 0 (0 = off), got {self.text_target_temperature}")
        if self.frame_text_weight < 0:
            raise ModelError(f"loss.frame_text_weight must be >= 0 (0 = off), got {self.frame_text_weight}")


def _world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit rank/world size, or torch.distributed's when it is initialised."""
    if world_size is None:
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if world_size > 1 else 0
    return rank, world_size


def gather_features(
    features: Sequence[torch.Tensor],
    *,
    local_loss: bool = False,
    gather_with_grad: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> list[torch.Tensor]:
    """Concatenate each tensor over ranks along dim 0 (rank order), open_clip's pattern.

    ``gather_with_grad``: gradients flow back to every rank's features. Without it the
    gathered copies carry no gradient; unless ``local_loss``, the local slot is replaced by
    the local tensor so the local features still get theirs.
    """
    if world_size == 1:
        return list(features)
    out = []
    for tensor in features:
        if gather_with_grad:
            with warnings.catch_warnings():
                # Deprecated in favour of a private API (_functional_collectives); this is the public
                # autograd all_gather open_clip uses, and it is verified by the 2-process test.
                warnings.filterwarnings(
                    "ignore", message=".*all_gather is deprecated", category=FutureWarning
                )
                gathered = dist_fn.all_gather(tensor)
            parts = [_ContiguousGrad.apply(part) for part in gathered]
            out.append(torch.cat(parts, dim=0))
        else:
            parts = [torch.zeros_like(tensor) for _ in range(world_size)]
            dist.all_gather(parts, tensor.detach().contiguous())
            if not local_loss:
                parts[rank] = tensor
            out.append(torch.cat(parts, dim=0))
    return out


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous.

    all_gather's backward on gloo emulates reduce-scatter with scatter into
    ``torch.empty_like(grad)``, which keeps a permuted stride layout (einsum's backward
    produces one) while gloo writes the buffer in row-major order: the gradient comes
    back scrambled. A contiguous gradient sidesteps that (found by the 2-process test).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _gather_no_grad(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size == 1:
        return tensor
    sendable = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor  # gloo has no bool all_gather
    parts = [torch.empty_like(sendable) for _ in range(world_size)]
    dist.all_gather(parts, sendable.detach().contiguous())
    gathered = torch.cat(parts, dim=0)
    return gathered.bool() if tensor.dtype == torch.bool else gathered


class _Distributed:
    """Which rows this rank scores, after gathering: all of them, or only its own (``local_loss``)."""

    def __init__(self, local_loss: bool, gather_with_grad: bool, rank: int | None, world_size: int | None):
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self._rank, self._world_size = rank, world_size

    # Resolved at each call, so a loss built before init_process_group still sees the process group.
    @property
    def rank(self) -> int:
        return _world(self._rank, self._world_size)[0]

    @property
    def world_size(self) -> int:
        return _world(self._rank, self._world_size)[1]

    @property
    def rows_are_local(self) -> bool:
        return self.local_loss and self.world_size > 1

    def gather(self, *features: torch.Tensor) -> list[torch.Tensor]:
        return gather_features(
            features,
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
            rank=self.rank,
            world_size=self.world_size,
        )

    def gather_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return _gather_no_grad(ids, self.world_size)

    def row_offset(self, local_rows: int) -> int:
        return self.rank * local_rows if self.rows_are_local else 0


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ModelError(
            f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must both be (B, D) with the same shape"
        )
    if a.shape[0] == 0:
        raise ModelError(f"{names[0]} is an empty batch")


def text_similarity_targets(rows: torch.Tensor, columns: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft targets ``softmax(rows @ columns.T / temperature)``: each row narration's similarity to
    every narration of the (global) batch. Detached: they are targets, not a path for gradient."""
    return torch.softmax((rows @ columns.T).detach() / temperature, dim=1)


def _symmetric_infonce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    world: _Distributed,
    ids: torch.Tensor | None = None,
    repeated_text: str = "negative",
    text_target_temperature: float = 0.0,
) -> torch.Tensor:
    """Mean of the a->b and b->a cross-entropies; pair i is (a_i, b_i); ``b`` is the text side."""
    n = a.shape[0]
    a_all, b_all = world.gather(a, b)
    ids_all = None if ids is None else world.gather_ids(ids)
    if world.rows_are_local:
        rows_a, rows_b, row_ids = a, b, ids
    else:
        rows_a, rows_b, row_ids = a_all, b_all, ids_all
    offset = world.row_offset(n)
    labels = torch.arange(rows_a.shape[0], device=a.device) + offset
    logits_ab = logit_scale * rows_a @ b_all.T
    logits_ba = logit_scale * rows_b @ a_all.T
    if text_target_temperature > 0:
        # Symmetric similarities, so the same targets serve both directions.
        targets = text_similarity_targets(rows_b, b_all, text_target_temperature)
        return (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets)) / 2
    if ids is None or repeated_text == "negative":
        return (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2
    same = row_ids[:, None] == ids_all[None, :]  # same sentence; symmetric, so it serves both directions
    if repeated_text == "ignore":
        own = F.one_hot(labels, ids_all.shape[0]).bool()
        drop = same & ~own
        logits_ab = logits_ab.masked_fill(drop, float("-inf"))
        logits_ba = logits_ba.masked_fill(drop, float("-inf"))
        return (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2
    targets = same.to(logits_ab.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets)) / 2


def _frame_text_ce(
    frames: torch.Tensor, texts: torch.Tensor, logit_scale: torch.Tensor, world: _Distributed,
    text_target_temperature: float = 0.0,
) -> torch.Tensor:
    """Mean frame -> text cross-entropy; ``frames`` (B, T, D), frame (i, t) belongs to text i."""
    batch, steps, dim = frames.shape
    frames_all, texts_all = world.gather(frames.reshape(batch, steps * dim), texts)
    rows_frames, rows_texts = (frames, texts) if world.rows_are_local else (frames_all.view(-1, steps, dim), texts_all)
    owner = torch.arange(rows_texts.shape[0], device=frames.device) + world.row_offset(batch)
    logits = logit_scale * rows_frames.reshape(-1, dim) @ texts_all.T
    if text_target_temperature > 0:
        targets = text_similarity_targets(rows_texts, texts_all, text_target_temperature)
        return F.cross_entropy(logits, targets.repeat_interleave(steps, dim=0))
    return F.cross_entropy(logits, owner.repeat_interleave(steps))


class ClipLoss(nn.Module):
    """Symmetric InfoNCE (CLIP), open_clip's ``ClipLoss`` plus ``repeated_text``.

    With ``repeated_text="negative"`` it computes exactly open_clip's loss.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        repeated_text: str = "negative",
    ):
        super().__init__()
        if repeated_text not in REPEATED_TEXT_MODES:
            raise ModelError(f"repeated_text must be one of {REPEATED_TEXT_MODES}, got {repeated_text!r}")
        self.world = _Distributed(local_loss, gather_with_grad, rank, world_size)
        self.repeated_text = repeated_text

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        text_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_pair(image_features, text_features, ("image_features", "text_features"))
        return _symmetric_infonce(
            image_features, text_features, logit_scale, self.world, text_ids, self.repeated_text
        )


# faiss marks missing results with -FLT_MAX (finite) rather than -inf; both mean "no neighbour".
MISSING_SCORE_BELOW = -1e30


def valid_neighbours(scores: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` bool: True where a neighbour exists (score finite and above faiss's -FLT_MAX filler)."""
    return torch.isfinite(scores) & (scores > MISSING_SCORE_BELOW)


def retrieval_weights(scores: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(scores / temperature)`` over neighbours, ignoring non-finite scores.

    Returns ``(weights (B, K), has_neighbour (B,))``; rows without any valid neighbour get zero weights.
    """
    valid = valid_neighbours(scores)
    logits = (scores / temperature).masked_fill(~valid, float("-inf"))
    has_neighbour = valid.any(dim=1)
    weights = torch.softmax(logits.masked_fill(~has_neighbour[:, None], 0.0), dim=1)
    weights = weights * valid * has_neighbour[:, None]
    return weights, has_neighbour


def mean_text_per_video(
    text_features: torch.Tensor, video_index: torch.Tensor, num_videos: int
) -> torch.Tensor:
    """L2-normalised mean of the text embeddings of each video: ``(N, D)``, owner ``(N,)`` -> ``(num_videos, D)``."""
    if text_features.shape[0] != video_index.shape[0]:
        raise ModelError(f"{text_features.shape[0]} text embeddings but {video_index.shape[0]} owner indices")
    if video_index.numel() and (video_index.min() < 0 or video_index.max() >= num_videos):
        raise ModelError(
            f"video_index values must lie in [0, {num_videos}), got {video_index.min()}..{video_index.max()}"
        )
    counts = torch.bincount(video_index, minlength=num_videos)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ModelError(
            f"every video needs at least one narration embedding; videos without: {missing[:10]}"
        )
    sums = torch.zeros(
        num_videos, text_features.shape[1], dtype=text_features.dtype, device=text_features.device
    )
    sums = sums.index_add(0, video_index, text_features)
    return F.normalize(sums, dim=-1)


class HierarchicalLoss(nn.Module):
    """Clip-level and video-level OphCLIP losses with the retrieval hook; see the module docstring."""

    def __init__(self, cfg: LossCfg | None = None, rank: int | None = None, world_size: int | None = None,
                 retrieval: RetrievalCfg | None = None):
        super().__init__()
        self.cfg = cfg or LossCfg()
        self.cfg.validate()
        # The retrieval term's mode, weight, temperature and mix: the ``retrieval:`` section.
        self.retrieval = retrieval or RetrievalCfg()
        self.retrieval.validate()
        self.world = _Distributed(self.cfg.local_loss, self.cfg.gather_with_grad, rank, world_size)

    def clip_loss(
        self,
        clip_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        text_ids: torch.Tensor | None = None,
        frame_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Clip level: ``clip``, ``frame_text`` (if on and ``frame_features`` (B, T, D) given) and ``total``."""
        _check_pair(clip_features, text_features, ("clip_features", "text_features"))
        if text_ids is not None and tuple(text_ids.shape) != (clip_features.shape[0],):
            raise ModelError(
                f"text_ids must have shape ({clip_features.shape[0]},), got {tuple(text_ids.shape)}"
            )
        clip = _symmetric_infonce(
            clip_features, text_features, logit_scale, self.world, text_ids, self.cfg.repeated_text,
            self.cfg.text_target_temperature,
        )
        out = {"clip": clip, "total": self.cfg.clip_weight * clip}
        if self.cfg.frame_text_weight > 0 and frame_features is not None:
            if frame_features.ndim != 3 or frame_features.shape[0] != clip_features.shape[0] \
                    or frame_features.shape[2] != clip_features.shape[1]:
                raise ModelError(f"frame_features must be (B={clip_features.shape[0]}, T, D={clip_features.shape[1]}), "
                                 f"got {tuple(frame_features.shape)}")
            out["frame_text"] = _frame_text_ce(frame_features, text_features, logit_scale, self.world,
                                               self.cfg.text_target_temperature)
            out["total"] = out["total"] + self.cfg.frame_text_weight * out["frame_text"]
        return out

    def video_loss(
        self,
        video_features: torch.Tensor,
        title_features: torch.Tensor,
        logit_scale: torch.Tensor,
        narration_features: torch.Tensor | None = None,
        neighbour_features: torch.Tensor | None = None,
        neighbour_scores: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Video level: ``video_title``, ``video_narration`` (if given), ``retrieval`` (if on and given), ``total``."""
        cfg = self.cfg
        _check_pair(video_features, title_features, ("video_features", "title_features"))
        out: dict[str, torch.Tensor] = {}
        out["video_title"] = _symmetric_infonce(video_features, title_features, logit_scale, self.world)
        total = cfg.video_title_weight * out["video_title"]
        if narration_features is not None:
            _check_pair(video_features, narration_features, ("video_features", "narration_features"))
            out["video_narration"] = _symmetric_infonce(
                video_features, narration_features, logit_scale, self.world
            )
            total = total + cfg.video_narration_weight * out["video_narration"]
        retrieval = self.retrieval
        if retrieval.mode != "off" and neighbour_features is not None:
            if neighbour_scores is None:
                raise ModelError("neighbour_features were given without neighbour_scores")
            batch, dim = video_features.shape
            if (
                neighbour_features.ndim != 3
                or neighbour_features.shape[0] != batch
                or neighbour_features.shape[2] != dim
            ):
                raise ModelError(
                    f"neighbour_features must be (B={batch}, K, D={dim}), got {tuple(neighbour_features.shape)}"
                )
            if tuple(neighbour_scores.shape) != tuple(neighbour_features.shape[:2]):
                raise ModelError(
                    f"neighbour_scores must be {tuple(neighbour_features.shape[:2])}, got {tuple(neighbour_scores.shape)}"
                )
            if retrieval.mode == "soft_positive":
                out["retrieval"] = self._soft_positive(
                    video_features, title_features, logit_scale, neighbour_features, neighbour_scores
                )
            else:
                out["retrieval"] = self._feature_aug(
                    video_features, title_features, logit_scale, neighbour_features, neighbour_scores
                )
            total = total + retrieval.weight * out["retrieval"]
        out["total"] = total
        return out

    def _soft_positive(self, videos, titles, logit_scale, neighbours, scores) -> torch.Tensor:
        n = videos.shape[0]
        weights, _ = retrieval_weights(scores, self.retrieval.temperature)
        valid = valid_neighbours(scores)
        (videos_all,) = self.world.gather(videos)
        if self.world.rows_are_local:
            rows_titles, rows_neighbours, rows_weights, rows_valid = titles, neighbours, weights, valid
        else:
            rows_titles, rows_neighbours = self.world.gather(titles, neighbours)
            rows_weights = self.world.gather_ids(weights)
            rows_valid = self.world.gather_ids(valid)
        own = torch.arange(rows_titles.shape[0], device=videos.device) + self.world.row_offset(n)
        logits_batch = logit_scale * rows_titles @ videos_all.T
        logits_batch = logits_batch.masked_fill(F.one_hot(own, videos_all.shape[0]).bool(), float("-inf"))
        logits_neighbours = logit_scale * torch.einsum("bd,bkd->bk", rows_titles, rows_neighbours)
        logits_neighbours = logits_neighbours.masked_fill(~rows_valid, float("-inf"))
        log_probs = torch.log_softmax(torch.cat([logits_neighbours, logits_batch], dim=1), dim=1)[
            :, : rows_weights.shape[1]
        ]
        # Rows without neighbours contribute 0 but still count, so per-rank means average to the global mean.
        per_row = -(rows_weights * log_probs.masked_fill(~rows_valid, 0.0)).sum(dim=1)
        return per_row.sum() / rows_titles.shape[0]

    def _feature_aug(self, videos, titles, logit_scale, neighbours, scores) -> torch.Tensor:
        weights, has_neighbour = retrieval_weights(scores, self.retrieval.temperature)
        neighbour_mean = torch.einsum("bk,bkd->bd", weights.to(neighbours.dtype), neighbours)
        mix = self.retrieval.mix * has_neighbour.to(videos.dtype)[:, None]
        mixed = F.normalize((1 - mix) * videos + mix * neighbour_mean, dim=-1)
        return _symmetric_infonce(mixed, titles, logit_scale, self.world)

    def forward(self, level: str, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``level="clip"`` -> :meth:`clip_loss`, ``level="video"`` -> :meth:`video_loss`."""
        if level == "clip":
            return self.clip_loss(**inputs)
        if level == "video":
            return self.video_loss(**inputs)
        raise ModelError(f"loss level must be 'clip' or 'video', got {level!r}")
