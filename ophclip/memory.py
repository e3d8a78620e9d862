"""The silent-video memory bank during training: encode, refresh, retrieve (the trainer's retrieval hook).

    pool = silent_pool(dataset_root, n_frames=8, transform=preprocess_eval)
    hook = SilentPoolBank(RetrievalCfg(mode="soft_positive", k=4, refresh_every=50), pool, dist=trainer.dist)
    Trainer(cfg, retrieval=hook).fit()

What it does, and when (:class:`RetrievalCfg`, the ``retrieval:`` section, holds every choice):

* **Encoding.** The silent pool (videos without narration, from the frame cache,
  preprocessed without augmentation) is encoded in batches under ``no_grad`` with the
  training model, or with a momentum (EMA) copy of it (``encoder="ema"``), whose
  embeddings drift less from one refresh to the next.
* **Warm-up.** Nothing is encoded or retrieved before ``warmup_steps``: a random
  encoder's neighbours are noise.
* **Refresh.** ``full``: every ``refresh_every`` steps the whole pool is re-encoded into a
  new bank that is swapped in atomically (:class:`retrieval.BankHolder`). ``incremental``:
  after the first full build, each step re-encodes the next ``incremental_slice`` videos
  of the pool (rotating) and updates them in place; with ``update_seen``, neighbours
  re-encoded with gradient for ``soft_positive`` write their fresh embeddings back too.
* **Retrieval.** For each narrated video of the batch, top-``k`` silent videos by inner
  product, excluding the video itself and near-duplicates scoring above ``max_score``.
* **DDP.** Each rank encodes every ``world_size``-th video of the pool; the embeddings
  are all-gathered, so every rank builds the same bank and no search crosses ranks.

The trainer calls ``maybe_refresh(step, model)`` and ``neighbours(video_ids, video_emb)``
(the :class:`RetrievalHook` protocol below). For ``soft_positive`` the neighbours should carry
gradient from their own pixels; after ``neighbours`` the trainer calls

    emb = hook.neighbour_embeddings_with_grad(lambda frames: encoder(frames=frames)["video"])

which loads the last neighbours' frames, encodes them with the given function (the
DDP-wrapped encoder, so the gradient is synchronised) and returns ``(B, K, D)`` with
zeros where a neighbour is missing (its score is -inf, so the loss ignores it).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm.auto import tqdm

from ophbase.device import module_device
from retrieval import INDEX_KINDS, BankHolder, MemoryBank

from .data import silent_videos
from .distributed import DistInfo
from .errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@runtime_checkable
class RetrievalHook(Protocol):
    """Where a memory bank plugs into the video level. The trainer calls, on every video-level step,

        hook.maybe_refresh(step, model)          # re-encode / rebuild the bank when due
        hook.neighbours(video_ids, video_emb)    # -> (emb (B, K, D), scores (B, K)) or None

    ``video_emb`` is the batch's (detached, normalised) video embeddings on this rank. The
    result is handed to the loss as constants; ``None`` means "no neighbours this step" and
    the retrieval term is skipped. With ``soft_positive``, a hook that also has
    ``neighbour_embeddings_with_grad(encode)`` is called right after ``neighbours``.
    """

    def maybe_refresh(self, step: int, model: torch.nn.Module) -> None: ...

    def neighbours(self, video_ids: list[str], video_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None: ...


class NoRetrieval:
    """The default: no memory bank."""

    def maybe_refresh(self, step: int, model: torch.nn.Module) -> None:
        return None

    def neighbours(self, video_ids: list[str], video_emb: torch.Tensor) -> None:
        return None


RETRIEVAL_MODES = ("off", "soft_positive", "feature_aug")


@dataclass
class RetrievalCfg:
    """The ``retrieval:`` section of a pretrain config: OphCLIP's silent-video memory bank, end to end.

    The first four fields shape the loss term the neighbours feed (:class:`ophclip.loss.HierarchicalLoss`);
    the rest say how the bank is encoded, refreshed and searched (:class:`SilentPoolBank`).
    :meth:`validate` is the one place these settings are checked.
    """

    # soft_positive: a title's neighbours are extra positives weighted by their search scores;
    # feature_aug: the video embedding is mixed with its neighbours' mean; off: no bank, no term.
    mode: str = "off"
    weight: float = 0.5  # the retrieval term's weight in the video-level loss
    temperature: float = 0.1  # neighbour weights: softmax(scores / temperature) over the K neighbours
    mix: float = 0.5  # feature_aug: (1 - mix) * video + mix * neighbours
    index: str = "flat"  # flat | ivf | hnsw (retrieval.indexes says when to use which)
    k: int = 4  # neighbours per narrated video
    refresh: Literal["full", "incremental"] = "full"
    refresh_every: int = 100  # full: steps between whole-pool re-encodes
    incremental_slice: int = 32  # incremental: pool videos re-encoded per step
    update_seen: bool = True  # write neighbours re-encoded with gradient back into the bank
    warmup_steps: int = 0  # no bank and no neighbours before this step
    encoder: Literal["model", "ema"] = "model"
    ema_momentum: float = 0.999  # ema: theta_ema <- m theta_ema + (1 - m) theta, once per call
    max_score: float | None = 0.98  # drop neighbours above this cosine (near-duplicates); None keeps all
    batch_size: int = 16  # videos per encoding batch

    @property
    def enabled(self) -> bool:
        """Whether training builds a bank and adds the retrieval term."""
        return self.mode != "off" and self.weight > 0

    def validate(self) -> None:
        if self.mode not in RETRIEVAL_MODES:
            raise ConfigError(f"retrieval.mode = {self.mode!r}; expected one of {', '.join(RETRIEVAL_MODES)}")
        if self.weight < 0:
            raise ConfigError(f"retrieval.weight = {self.weight}; it must be >= 0 (0 switches retrieval off)")
        if self.temperature <= 0:
            raise ConfigError(f"retrieval.temperature = {self.temperature}; it must be > 0")
        if not 0.0 <= self.mix <= 1.0:
            raise ConfigError(f"retrieval.mix = {self.mix}; expected a fraction in [0, 1]")
        for key in ("k", "batch_size", "refresh_every", "incremental_slice"):
            if getattr(self, key) < 1:
                raise ConfigError(f"retrieval.{key} = {getattr(self, key)}; it must be at least 1")
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"retrieval.index = {self.index!r}; expected one of {', '.join(INDEX_KINDS)}")
        if self.refresh not in ("full", "incremental"):
            raise ConfigError(f"retrieval.refresh = {self.refresh!r}; expected 'full' or 'incremental'")
        if self.encoder not in ("model", "ema"):
            raise ConfigError(f"retrieval.encoder = {self.encoder!r}; expected 'model' or 'ema'")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ConfigError(f"retrieval.ema_momentum = {self.ema_momentum}; expected 0 <= m < 1")
        if self.warmup_steps < 0:
            raise ConfigError(f"retrieval.warmup_steps = {self.warmup_steps}; expected >= 0")


# The bank's settings were a ``memory:`` section of their own before ``retrieval:`` held them all.
MemoryCfg = RetrievalCfg


class VideoPool(Protocol):
    """What the bank reads the silent videos from: ``ophclip.data.VideoDataset`` fits.

    ``pool[i]`` is ``{"frames": (T, 3, S, S) float tensor, "video_id": str, ...}``.
    """

    video_ids: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def silent_pool(root: str | Path, n_frames: int, transform: Callable | None) -> VideoPool:
    """The silent videos of a dataset root, ``n_frames`` evenly spaced frames each, without augmentation."""
    pool = silent_videos(root, n_frames=n_frames, transform=transform)
    if len(pool) == 0:
        raise DataError(
            f"{Path(root) / 'videos.parquet'}: no silent videos (kind == 'silent', status ok); "
            "the memory bank needs a silent pool, or turn retrieval off (loss.retrieval_weight=0)"
        )
    return pool


@torch.no_grad()
def encode_pool(
    model: nn.Module,
    pool: VideoPool,
    indices: Sequence[int],
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """``model.encode_video(normalize=True)`` of ``pool[indices]``, in batches, under no_grad -> (n, D) float32 on CPU.

    The model is put in eval mode for the pass (no dropout, fixed norms) and restored after.
    """
    device = module_device(model)
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    starts = range(0, len(indices), batch_size)
    if progress:
        starts = tqdm(starts, desc="encode silent pool", unit="batch", total=len(starts))
    try:
        for lo in starts:
            frames = torch.stack([pool[int(i)]["frames"] for i in indices[lo : lo + batch_size]]).to(device)
            out.append(model.encode_video(frames, normalize=True).float().cpu())
    finally:
        model.train(was_training)
    dim = getattr(model, "embed_dim", None)
    return torch.cat(out) if out else torch.empty(0, dim or 0)


class EmaEncoder:
    """A momentum copy of the model for bank embeddings: ``theta_ema <- m theta_ema + (1 - m) theta``.

    Only trainable parameters are averaged (a frozen text tower never changes); buffers are copied.
    """

    def __init__(self, model: nn.Module, momentum: float):
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._named = {
            name: (ema_p, p)
            for (name, ema_p), (_, p) in zip(
                self.model.named_parameters(), model.named_parameters(), strict=True
            )
            if p.requires_grad
        }
        self._pairs = list(self._named.values())
        self._buffers = list(zip(self.model.buffers(), model.buffers(), strict=True))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged parameters only: the rest (a frozen tower, buffers) equals the model's."""
        return {name: ema_p.detach().clone() for name, (ema_p, _) in self._named.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self._named) - set(state))
        if missing:
            raise DataError(f"the EMA encoder state lacks {len(missing)} parameter(s), e.g. {missing[0]!r}")
        for name, (ema_p, _) in self._named.items():
            ema_p.copy_(state[name])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._pairs:
            ema = [e for e, _ in self._pairs]
            torch._foreach_lerp_(ema, [p.detach() for _, p in self._pairs], 1.0 - self.momentum)
        for b_ema, b in self._buffers:
            b_ema.copy_(b)


class SilentPoolBank:
    """The trainer's retrieval hook backed by a :class:`retrieval.MemoryBank` of the silent pool.

    Args:
        cfg: :class:`RetrievalCfg`.
        pool: the silent videos (:func:`silent_pool`); the same order on every rank.
        dist: process-group info (None: one process).
        progress: show a progress bar while encoding the whole pool (rank 0 only).
    """

    def __init__(
        self, cfg: RetrievalCfg, pool: VideoPool, *, dist: DistInfo | None = None, progress: bool = False
    ):
        cfg.validate()
        if len(pool) == 0:
            raise DataError("the silent pool is empty; the memory bank needs at least one silent video")
        self.cfg = cfg
        self.pool = pool
        self.dist = dist or DistInfo()
        self.progress = progress and self.dist.is_main
        self.holder = BankHolder()
        self.ema: EmaEncoder | None = None
        self._index_of = {v: i for i, v in enumerate(pool.video_ids)}
        self._last_full: int | None = None
        self._cursor = 0  # incremental: next pool position to re-encode
        self._step = 0
        self._last_ids: list[list[str | None]] | None = None
        self.stats: dict[str, float] = {
            "full_refreshes": 0,
            "incremental_updates": 0,
            "encode_s": 0.0,
            "search_s": 0.0,
        }

    @classmethod
    def from_dataset_root(
        cls,
        cfg: RetrievalCfg,
        root: str | Path,
        *,
        n_frames: int,
        transform: Callable,
        dist: DistInfo | None = None,
        progress: bool = True,
    ) -> SilentPoolBank:
        """The hook over the silent videos of a dataset root (``transform``: the model's ``preprocess_eval``)."""
        return cls(cfg, silent_pool(root, n_frames, transform), dist=dist, progress=progress)

    # -- state ------------------------------------------------------------------------
    @property
    def bank(self) -> MemoryBank | None:
        return self.holder.bank

    @property
    def active(self) -> bool:
        """Retrieval is on: warm-up is over and a bank exists."""
        return self._step >= self.cfg.warmup_steps and self.holder.bank is not None

    @property
    def last_neighbour_ids(self) -> list[list[str | None]] | None:
        """(B, K) ids returned by the last :meth:`neighbours` call (None where missing)."""
        return self._last_ids

    # -- hook: refresh ----------------------------------------------------------------
    def maybe_refresh(self, step: int, model: nn.Module) -> None:
        """Update the EMA copy, then (after warm-up) build or refresh the bank as the policy says."""
        self._step = step
        cfg = self.cfg
        if cfg.encoder == "ema":
            if self.ema is None:
                self.ema = EmaEncoder(model, cfg.ema_momentum)
            else:
                self.ema.update(model)
        if step < cfg.warmup_steps:
            return
        encoder = self.ema.model if self.ema is not None else model
        if self.holder.bank is None or (
            cfg.refresh == "full" and step - self._last_full >= cfg.refresh_every
        ):
            self.full_refresh(encoder, step)
        elif cfg.refresh == "incremental":
            self._incremental_refresh(encoder)

    def full_refresh(self, encoder: nn.Module, step: int = 0) -> MemoryBank:
        """Re-encode the whole pool (sharded over ranks), build a new bank, swap it in."""
        t0 = time.perf_counter()
        ids, emb = self._encode_sharded(encoder, np.arange(len(self.pool)), progress=self.progress)
        bank = self._install(ids, emb)
        self._last_full = step
        elapsed = time.perf_counter() - t0
        self.stats["full_refreshes"] += 1
        self.stats["encode_s"] += elapsed
        logger.info(
            "memory bank: full refresh at step %d, %d silent videos in %.1f s", step, len(bank), elapsed
        )
        return bank

    def _install(self, ids: list[str], emb: torch.Tensor | np.ndarray) -> MemoryBank:
        """Build a bank of ``ids``/``emb`` and swap it in atomically."""
        # On a GPU machine faiss searches on this rank's own GPU (not sharded over all of them:
        # every rank holds a whole bank). Without faiss GPU support the bank stays on the CPU.
        device = self.dist.device
        gpu_devices = [device.index or 0] if device.type == "cuda" else None
        bank = MemoryBank(
            emb.shape[1], self.cfg.index, use_gpu="auto" if gpu_devices else False, gpu_devices=gpu_devices
        )
        bank.add(ids, emb)
        self.holder.swap(bank)
        return bank

    # -- checkpoint state -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What an exact resume needs: the bank's entries as they are (stale ones included),
        the refresh schedule's position and the EMA encoder. Tensors, strings and numbers only,
        so the checkpoint still loads with ``weights_only=True``."""
        bank = self.holder.bank
        ids = bank.ids if bank is not None else []
        return {
            "ids": ids,
            "vectors": torch.from_numpy(bank.get_vectors(ids)) if bank is not None else torch.empty(0),
            "last_full": self._last_full,
            "cursor": self._cursor,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Restore :meth:`state_dict`; ``model`` is the (already restored) training model the EMA copies."""
        if state["ids"]:
            unknown = [v for v in state["ids"] if v not in self._index_of]
            if unknown:
                raise DataError(
                    f"the checkpoint's memory bank holds {len(unknown)} video(s) that are not in this run's silent "
                    f"pool (e.g. {unknown[0]!r}); resume on the same dataset root, or start a fresh run"
                )
            self._install(list(state["ids"]), state["vectors"].float().cpu())
        self._last_full = state["last_full"]
        self._cursor = int(state["cursor"])
        if state["ema"] is not None:
            self.ema = EmaEncoder(model, self.cfg.ema_momentum)
            self.ema.load_state_dict(state["ema"])
        self.stats.update(state["stats"])

    def _incremental_refresh(self, encoder: nn.Module) -> None:
        n = len(self.pool)
        take = min(self.cfg.incremental_slice, n)
        positions = (self._cursor + np.arange(take)) % n
        self._cursor = int((self._cursor + take) % n)
        t0 = time.perf_counter()
        ids, emb = self._encode_sharded(encoder, positions)
        self.holder.bank.update(ids, emb)  # one locked call: a search sees all of it or none
        self.stats["incremental_updates"] += 1
        self.stats["encode_s"] += time.perf_counter() - t0

    def _encode_sharded(
        self, encoder: nn.Module, positions: np.ndarray, progress: bool = False
    ) -> tuple[list[str], torch.Tensor]:
        """Encode ``pool[positions]``: rank r takes positions[r::world]; all-gather restores the order."""
        world, rank = self.dist.world_size, self.dist.rank
        mine = positions[rank::world]
        emb = encode_pool(encoder, self.pool, mine, self.cfg.batch_size, progress=progress)
        if world > 1:
            emb = _all_gather_strided(emb, len(positions), world, self.dist.device)
        return [self.pool.video_ids[int(i)] for i in positions], emb

    # -- hook: retrieval --------------------------------------------------------------
    def neighbours(
        self, video_ids: list[str], video_emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Top-k silent neighbours of each narrated video: ``(emb (B, K, D), scores (B, K))`` or None before warm-up.

        The query video itself (if it is also in the pool) and near-duplicates above
        ``max_score`` are excluded; a missing neighbour has score -inf and a zero embedding.
        """
        if not self.active:
            self._last_ids = None
            return None
        bank = self.holder.bank  # one bank for the whole call, even if a refresh swaps meanwhile
        t0 = time.perf_counter()
        result = bank.search(
            video_emb.detach(), self.cfg.k, exclude=[[v] for v in video_ids], max_score=self.cfg.max_score
        )
        found = result.ids != None  # noqa: E711 - elementwise over an object array
        emb = np.zeros((*result.ids.shape, bank.dim), dtype=np.float32)
        if found.any():
            emb[found] = bank.get_vectors(result.ids[found].tolist())
        self.stats["search_s"] += time.perf_counter() - t0
        self._last_ids = result.ids.tolist()
        device = video_emb.device
        return torch.from_numpy(emb).to(device), torch.from_numpy(result.scores).to(device)

    def neighbour_frames(self, ids: Sequence[str]) -> torch.Tensor:
        """Preprocessed frames of silent videos, ``(N, T, 3, S, S)``, from the pool."""
        unknown = [v for v in ids if v not in self._index_of]
        if unknown:
            raise DataError(f"video {unknown[0]!r} is not in the silent pool ({len(self.pool)} videos)")
        return torch.stack([self.pool[self._index_of[v]]["frames"] for v in ids])

    def neighbour_embeddings_with_grad(
        self, encode: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor | None:
        """Re-encode the last neighbours WITH gradient: ``(B, K, D)``, zeros where missing.

        ``encode`` maps frames ``(N, T, 3, S, S)`` on any device to normalised ``(N, D)``
        embeddings (the trainer's DDP-wrapped encoder). Each distinct neighbour is encoded
        once. With ``update_seen`` their fresh (detached) embeddings are written into the bank.
        """
        if self._last_ids is None:
            return None
        flat = [v for row in self._last_ids for v in row]
        unique = sorted({v for v in flat if v is not None})
        if not unique:
            # Under DDP every rank must still join the write-back's collective.
            if self.cfg.update_seen and self.dist.world_size > 1:
                self._write_back([], torch.empty(0, self.holder.bank.dim))
            return None
        emb = encode(self.neighbour_frames(unique))
        slot = {v: i for i, v in enumerate(unique)}
        index = torch.tensor([slot.get(v, len(unique)) for v in flat], device=emb.device)
        padded = torch.cat([emb, emb.new_zeros(1, emb.shape[1])])  # the extra row serves missing neighbours
        out = padded[index].view(len(self._last_ids), len(self._last_ids[0]), -1)
        if self.cfg.update_seen:
            self._write_back(unique, emb.detach().float().cpu())
        return out

    def _write_back(self, ids: list[str], emb: torch.Tensor) -> None:
        """Update the bank with freshly encoded neighbours; under DDP with every rank's, so banks stay equal."""
        if self.dist.world_size > 1:
            parts: list[Any] = [None] * self.dist.world_size
            torch_dist.all_gather_object(parts, (ids, emb.numpy()))
            merged: dict[str, np.ndarray] = {}
            for part_ids, part_emb in parts:  # rank order: every rank merges identically
                for vid, vec in zip(part_ids, part_emb, strict=True):
                    merged.setdefault(vid, vec)
            if not merged:
                return
            ids, emb = list(merged), torch.from_numpy(np.stack(list(merged.values())))
        self.holder.bank.update(ids, emb)


def _all_gather_strided(local: torch.Tensor, total: int, world: int, device: torch.device) -> torch.Tensor:
    """Inverse of ``positions[rank::world]``: gather every rank's rows and interleave them back.

    Ranks hold ceil or floor of total / world rows; all_gather needs equal shapes, so each
    pads to the ceiling and the padding is dropped after.
    """
    per_rank = -(-total // world)
    dim = local.shape[1]
    send = torch.zeros(per_rank, dim, dtype=torch.float32, device=device)
    send[: len(local)] = local.to(device)
    parts = [torch.empty_like(send) for _ in range(world)]
    torch_dist.all_gather(parts, send)
    out = torch.empty(total, dim, dtype=torch.float32)
    for r, part in enumerate(parts):
        count = len(range(r, total, world))
        out[r::world] = part[:count].cpu()
    return out
