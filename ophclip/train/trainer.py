"""The hierarchical contrastive pretraining loop.

    trainer = Trainer(cfg, resume="latest")
    summary = trainer.fit()

One optimizer step trains one level, chosen by :class:`LevelSchedule` from the step
number: ``video_every`` clip-level steps (clip <-> narration), then one video-level step
(video <-> title summary, video <-> mean narration, and optionally retrieved silent
neighbours). Each level has its own loader and global batch size.

Exactness: the data order is a function of (seed, level, epoch, position), augmentation
is seeded per sample, and a checkpoint stores every RNG state, so a resumed run retraces an
uninterrupted one step for step. Gradient accumulation caches the features of every
micro-batch, then recomputes one micro-batch at a time with gradient against the cached
rest (open_clip's ``--accum-freq``), restoring the RNG state of the first pass so the
recomputed features equal the cached ones; the gradient then equals the full batch's.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from data_pipeline._io import atomic_write_json

from ..config import save_config, to_dict
from ..errors import ConfigError, DataError, OphclipError
from ..loss import HierarchicalLoss, mean_text_per_video
from . import checkpoint as ckpt
from .config import LEVELS, PretrainConfig, validate
from .data import LevelBatchSampler, Levels, collate, load_levels
from .distributed import DistInfo, all_reduce_mean, barrier, gather_objects, init_distributed, shutdown
from .hooks import NoRetrieval, RetrievalHook
from .logs import RunLogger
from .memory import SilentPoolBank
from .schedule import CLIP, VIDEO, LevelSchedule, make_lr_scheduler

logger = logging.getLogger(__name__)

RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
MODEL_DIR = "final"  # <output_dir>/final: the save_pretrained folder evaluation commands take


class TrainingDivergedError(OphclipError, FloatingPointError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Components:
    """What the trainer needs from the model library (``ophclip.create_model_and_transforms``)."""

    model: nn.Module
    tokenizer: Callable[[list[str]], Any]
    preprocess_train: Callable | None
    preprocess_eval: Callable | None


def build_components(cfg: PretrainConfig) -> Components:
    """Create the named model, its tokenizer and transforms; an unknown name is a ConfigError."""
    import ophclip

    if cfg.model.config_file:
        path = Path(cfg.model.config_file)
        if not path.is_file():
            raise ConfigError(f"model.config_file = {str(path)!r} does not exist; give a JSON model config")
        ophclip.add_model_config(path)
    known = ophclip.list_models()
    if cfg.model.name not in known and not Path(cfg.model.name).is_dir():
        raise ConfigError(
            f"model.name = {cfg.model.name!r} is not a known model; known models: {', '.join(known)} "
            "(or register one with model.config_file=<json>)"
        )
    model, pre_train, pre_eval = ophclip.create_model_and_transforms(
        cfg.model.name,
        pretrained=cfg.model.pretrained,
        augmentation=cfg.data.augmentation,
        text_frozen=cfg.model.freeze_text,
        image_size=cfg.model.image_size,
    )
    if cfg.model.init_vision_from:
        from ..ssl import load_vision_init

        load_vision_init(model, cfg.model.init_vision_from)
    if cfg.model.lock_image:
        model.lock_image_tower(cfg.model.lock_image_unlocked_groups, cfg.model.freeze_bn_stats)
    elif cfg.model.freeze_bn_stats:
        model.freeze_vision_bn_stats()
    return Components(model, ophclip.get_tokenizer(cfg.model.name), pre_train, pre_eval)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision = fp16 needs a CUDA device; use fp32 (or bf16) on CPU")
    return precision


class _Encoder(nn.Module):
    """The model's encoders behind one ``forward``, so DDP sees every use of the parameters.

    ``logit_scale`` is returned too: a parameter used outside the wrapped forward would be
    reported as unused by DDP and then receive a gradient it did not expect.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor | None = None, tokens: Any = None,
                with_frames: bool = False) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if frames is not None and with_frames:
            out["video"], out["frames"] = self.model.encode_video(frames, normalize=True, return_frames=True)
        elif frames is not None:
            out["video"] = self.model.encode_video(frames, normalize=True)
        if tokens is not None:
            out["text"] = self.model.encode_text(tokens, normalize=True)
        out["logit_scale"] = _logit_multiplier(self.model)
        return out


class LevelLoss:
    """Feeds one level's features to :class:`ophclip.loss.HierarchicalLoss`.

    Called as ``loss(level, features, logit_scale, neighbours)``; returns the loss terms by
    name with their weighted sum under ``"total"``.
    """

    def __init__(self, loss: HierarchicalLoss):
        self.loss = loss

    def __call__(
        self,
        level: str,
        features: dict[str, torch.Tensor],
        logit_scale: torch.Tensor,
        neighbours: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        if level == CLIP:
            return self.loss.clip_loss(features["video"], features["text"], logit_scale, text_ids=features.get("text_ids"),
                                       frame_features=features.get("frames"))
        neighbour_features, neighbour_scores = neighbours if neighbours is not None else (None, None)
        return self.loss.video_loss(
            features["video"],
            features["text"],
            logit_scale,
            narration_features=features.get("narration"),
            neighbour_features=neighbour_features,
            neighbour_scores=neighbour_scores,
        )


class TextEmbeddingCache:
    """Embeddings of every unique sentence by a frozen text tower, computed once.

    With the text tower frozen, a sentence's embedding never changes, so each training
    step looks its rows up instead of running the tower.
    """

    def __init__(self, model: nn.Module, tokenizer: Callable, texts: list[str], device: torch.device, batch_size: int = 256):
        unique = sorted(set(texts))
        self.row = {t: i for i, t in enumerate(unique)}
        chunks = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for i in range(0, len(unique), batch_size):
                tokens = _to_device(tokenizer(unique[i : i + batch_size]), device)
                chunks.append(model.encode_text(tokens, normalize=True).float())
        model.train(was_training)
        self.table = torch.cat(chunks) if chunks else torch.empty(0)
        logger.info("cached frozen text embeddings of %d unique sentences", len(unique))

    def __len__(self) -> int:
        return len(self.row)

    def lookup(self, texts: list[str]) -> torch.Tensor:
        return self.table[[self.row[t] for t in texts]]


def _to_device(tokens: Any, device: torch.device) -> Any:
    if isinstance(tokens, torch.Tensor):
        return tokens.to(device, non_blocking=True)
    if isinstance(tokens, dict):
        return {k: _to_device(v, device) for k, v in tokens.items()}
    return tokens


def _split_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    size = batch["frames"].shape[0] // parts
    return [{k: v[i * size : (i + 1) * size] for k, v in batch.items()} for i in range(parts)]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("ophclip", "open_clip_torch", "transformers", "numpy", "pandas"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Trainer:
    """Hierarchical clip/video contrastive pretraining of one model on one dataset root.

    Args:
        cfg: the run config (validated here against the world size).
        resume: ``"latest"`` (the run's latest checkpoint if any), ``"best"``, a checkpoint
            path, or None for a fresh run.
        components: model, tokenizer and transforms; built from ``cfg.model`` when None.
        loss: ``loss(level, features, logit_scale, neighbours) -> dict`` with a ``"total"``
            entry; :class:`LevelLoss` over ``ophclip.loss.HierarchicalLoss(cfg.loss)`` when None.
        retrieval: the memory-bank hook (see :mod:`ophclip.train.hooks`).
        dist: process-group info; read from torchrun's environment when None.
    """

    def __init__(
        self,
        cfg: PretrainConfig,
        *,
        resume: str | Path | None = None,
        components: Components | None = None,
        loss: Callable[..., dict[str, torch.Tensor]] | None = None,
        retrieval: RetrievalHook | None = None,
        dist: DistInfo | None = None,
    ):
        self.cfg = cfg
        self.dist = dist or init_distributed(cfg.train.device)
        validate(cfg, self.dist.world_size)
        self.device = self.dist.device
        self.output_dir = Path(cfg.train.output_dir)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.schedule = LevelSchedule(cfg.train.video_every)
        self.step = 0
        self.consumed = {level: 0 for level in LEVELS}  # batches drawn per level: the data position
        self.best_metric = math.inf

        root = Path(cfg.data.root)
        if not (root / "clips.parquet").is_file() or not (root / "frames").is_dir():
            raise DataError(
                f"data.root = {str(root)!r} is not a dataset root (it needs clips.parquet, videos.parquet and "
                "frames/); build one with `ophclip pipeline run CONFIG`, or from the synthetic ground truth"
            )
        # Same seed on every rank for the model's init (DDP also broadcasts rank 0's weights);
        # a per-rank seed afterwards so dropout differs between ranks as it would between GPUs.
        _seed_everything(cfg.train.seed)
        self.components = components or build_components(cfg)
        self.model = self.components.model.to(self.device)
        self._configure_model()

        transform = self.components.preprocess_train if cfg.data.augment else self.components.preprocess_eval
        self.levels: Levels = load_levels(cfg.data.root, cfg.data, transform=transform, train=True)
        self._check_levels()
        frozen_text = bool(getattr(self.model, "text_tower_is_frozen", False))
        self.text_cache = self._build_text_cache() if frozen_text else None

        # Identical sentences share an id, so the loss can treat repeats as it is told (loss.repeated_text).
        self._text_ids = {t: i for i, t in enumerate(sorted(set(self.levels.clip.texts)))}
        self.loss_fn = loss or LevelLoss(HierarchicalLoss(cfg.loss, rank=self.dist.rank, world_size=self.dist.world_size))
        self.retrieval = retrieval or self._default_retrieval()
        self.ssl_aux = self._build_ssl_aux()
        self._neighbour_gradient = cfg.loss.retrieval_mode == "soft_positive" and hasattr(
            self.retrieval, "neighbour_embeddings_with_grad"
        )
        self.optimizer = self._make_optimizer()
        self.scheduler = make_lr_scheduler(self.optimizer, cfg.train.steps, cfg.train.warmup_steps, cfg.train.min_lr_ratio)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.encoder: nn.Module = _Encoder(self.model)
        if self.dist.distributed:
            self.encoder = DistributedDataParallel(
                self.encoder,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # The levels use different parts of the model (e.g. a temporal head only at
                # the video level), so some parameters sit out some steps.
                find_unused_parameters=True,
            )

        _seed_everything(cfg.train.seed + self.dist.rank)
        resume_path = ckpt.resolve_resume(resume, self.output_dir)
        if resume_path is not None:
            self._load(resume_path)
        self._iterators: dict[str, Iterator] = {}
        self._window: dict[str, list[dict[str, float]]] = {}
        self._window_samples, self._window_time = 0, 0.0
        self._since_save: list[float] = []
        self.history: list[dict[str, Any]] = []
        self.run_logger = RunLogger(
            self.output_dir,
            enabled=self.dist.is_main,
            tensorboard=cfg.log.tensorboard,
            jsonl=cfg.log.jsonl,
            resume_step=self.step if resume_path is not None else None,
        )
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.output_dir / CONFIG_YAML)
            self._write_run_json("running")

    # ------------------------------------------------------------------ setup
    def _configure_model(self) -> None:
        if self.cfg.model.grad_checkpointing:
            if not hasattr(self.model, "set_grad_checkpointing"):
                raise ConfigError(
                    f"model.grad_checkpointing = true but {type(self.model).__name__} has no set_grad_checkpointing()"
                )
            self.model.set_grad_checkpointing(True)
        frozen = bool(getattr(self.model, "text_tower_is_frozen", False))
        if self.cfg.model.freeze_text and not frozen:
            raise ConfigError(f"model.freeze_text = true but the text tower of {self.cfg.model.name} still has trainable parameters")

    def _default_retrieval(self) -> RetrievalHook:
        """The memory bank of the dataset root's silent pool, as ``cfg.memory`` says, when retrieval is on."""
        loss = self.cfg.loss
        if loss.retrieval_mode == "off" or loss.retrieval_weight == 0 or self.cfg.train.video_every == 0:
            return NoRetrieval()
        return SilentPoolBank.from_dataset_root(
            self.cfg.memory,
            self.cfg.data.root,
            n_frames=self.cfg.data.video_frames,
            # Bank entries are encoded as evaluation sees videos: no augmentation.
            transform=self.components.preprocess_eval,
            dist=self.dist,
            progress=self.dist.is_main,
        )

    def _build_ssl_aux(self) -> Any:
        """The auxiliary self-supervised loss on silent-pool clips (``ssl_aux``), or None when its weight is 0."""
        aux = self.cfg.ssl_aux
        if aux.weight == 0:
            return None
        from ..ssl import SilentPoolSSL

        return SilentPoolSSL(
            aux, self.cfg.data.root, self.model.visual, self.model.config, self.cfg.train.steps,
            seed=self.cfg.train.seed, exclude_splits=self.cfg.data.exclude_splits,
            rank=self.dist.rank, world_size=self.dist.world_size,
        ).to(self.device)

    def _check_levels(self) -> None:
        root = Path(self.cfg.data.root)
        counts = self.levels.counts
        if len(self.levels.clip) == 0:
            raise DataError(
                f"{root / 'clips.parquet'}: the clip level is empty (no usable clip-text pairs; "
                f"{counts.get('clips_dropped', 0)} dropped for empty text or end <= start); "
                "rerun the pipeline's clip stages for this dataset root"
            )
        if self.cfg.train.video_every > 0 and len(self.levels.video) == 0:
            raise DataError(
                f"{root / 'video_texts.parquet'}: the video level is empty (no narrated video with a non-empty "
                f"{self.cfg.data.video_text!r} and at least one clip); rerun the pipeline's summary stage, "
                "or set train.video_every=0 to train the clip level only"
            )
        for level in self.schedule.levels:
            # Raises a DataError naming the batch-size key when a level cannot fill one global batch.
            self._sampler(level)

    def _build_text_cache(self) -> TextEmbeddingCache:
        texts = list(self.levels.clip.texts)
        if self.cfg.train.video_every > 0:
            texts += self.levels.video.texts or []
            for sentences in self.levels.video.narrations or []:
                texts += sentences
        return TextEmbeddingCache(self.model, self.components.tokenizer, texts, self.device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # open_clip's rule: no weight decay on gains, biases, embeddings and the logit scale
        # (plus whatever the model lists in no_weight_decay()).
        named = set(self.model.no_weight_decay()) if hasattr(self.model, "no_weight_decay") else set()
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            exclude = p.ndim < 2 or name in named or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
            (no_decay if exclude else decay).append(p)
        t = self.cfg.train
        groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": t.weight_decay}]
        if self.ssl_aux is not None:  # the auxiliary loss's DINO head trains with the model
            groups.append({"params": list(self.ssl_aux.parameters()), "weight_decay": t.weight_decay})
        # The fused kernel exists for CUDA and CPU; on CPU it is ~5x faster than the per-tensor
        # loop (1.5 s -> 0.3 s per ViT-B-16 step, benchmarks/perf_train_step.py's profile).
        fused = self.device.type in ("cuda", "cpu")
        return torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps, fused=fused)

    @property
    def trainable_parameters(self) -> list[nn.Parameter]:
        extra = list(self.ssl_aux.parameters()) if self.ssl_aux is not None else []
        return [p for p in self.model.parameters() if p.requires_grad] + [p for p in extra if p.requires_grad]

    # ------------------------------------------------------------------ data
    def _sampler(self, level: str) -> LevelBatchSampler:
        dataset = getattr(self.levels, level)
        return LevelBatchSampler(
            len(dataset),
            getattr(self.cfg.train, f"{level}_batch_size"),
            seed=self.cfg.train.seed,
            level=level,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start_batch=self.consumed[level],
            groups=dataset.video_ids if level == CLIP else None,
            group_size=self.cfg.data.clips_per_video if level == CLIP else 1,
        )

    def _loader(self, level: str) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            getattr(self.levels, level),
            batch_sampler=self._sampler(level),
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
            # A private generator: creating a loader iterator must not draw from the global
            # RNG, or a resumed run (which creates it at another step) would drift.
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    def next_batch(self, level: str) -> dict[str, Any]:
        """The next batch of ``level`` for this rank; advances the level's data position."""
        if level not in self._iterators:
            self._iterators[level] = iter(self._loader(level))
        batch = next(self._iterators[level])
        self.consumed[level] += 1
        return batch

    def data_position(self) -> dict[str, dict[str, int]]:
        out = {}
        for level in LEVELS:
            n = self.consumed[level]
            dataset = getattr(self.levels, level)
            size = getattr(self.cfg.train, f"{level}_batch_size")
            per_epoch = max(1, len(dataset) // size)
            out[level] = {"batches": n, "epoch": n // per_epoch, "position": n % per_epoch}
        return out

    # ------------------------------------------------------------------ step
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _features(self, level: str, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Embeddings of one (micro-)batch: video, text and, at the video level, the mean narration."""
        frames = batch["frames"].to(self.device, non_blocking=True)
        texts: list[str] = list(batch["text"])
        narrations: list[list[str]] = []
        if level == VIDEO and self.cfg.loss.video_narration_weight > 0:
            narrations = list(batch["narrations"])
        flat = [s for sentences in narrations for s in sentences]
        tokens = None
        if self.text_cache is None:
            tokens = _to_device(self.components.tokenizer(texts + flat), self.device)
        with self._autocast():
            out = self.encoder(frames=frames, tokens=tokens,
                               with_frames=level == CLIP and self.cfg.loss.frame_text_weight > 0)
        if self.text_cache is None:
            text_emb = out["text"].float()
        else:
            text_emb = self.text_cache.lookup(texts + flat).to(self.device)
        feats = {"video": out["video"].float(), "text": text_emb[: len(texts)]}
        if level == CLIP:
            feats["text_ids"] = torch.tensor([self._text_ids[t] for t in texts], device=self.device)
            if "frames" in out:
                feats["frames"] = out["frames"].float()
        elif flat:
            owner = torch.repeat_interleave(torch.arange(len(narrations)), torch.tensor([len(s) for s in narrations]))
            feats["narration"] = mean_text_per_video(text_emb[len(texts) :], owner.to(self.device), len(narrations))
        return feats, out["logit_scale"]

    def _rng_snapshot(self) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _rng_restore(self, state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state_all(state[1])

    def _check_finite(self, value: torch.Tensor, what: str, level: str) -> float:
        value = float(all_reduce_mean(value.detach().float(), self.dist))
        if not math.isfinite(value):
            latest = ckpt.checkpoint_dir(self.output_dir) / ckpt.LATEST
            kept = f"the last good checkpoint is {latest}" if latest.is_file() else "no checkpoint was written yet"
            if self.dist.is_main:
                self._write_run_json("diverged", error=f"{what} = {value} at step {self.step} ({level} level)")
            raise TrainingDivergedError(
                f"{what} became {value} at step {self.step} ({level} level); training stopped before the "
                f"optimizer step, and {kept}. Lower train.lr, set train.grad_clip_norm, or check the data of "
                f"this step, then rerun with --resume latest"
            )
        return value

    def forward_backward(self, level: str, batch: dict[str, Any]) -> dict[str, float]:
        """Accumulate the gradient of ``level``'s loss on ``batch`` into ``.grad``; return the losses.

        Losses are averaged over ranks. Nothing is stepped; :meth:`train_step` does that.
        """
        accum = self.cfg.train.accum_freq
        micro = _split_batch(batch, accum) if accum > 1 else [batch]
        if level == VIDEO:
            self.retrieval.maybe_refresh(self.step, self.model)
        if accum == 1:
            feats, scale = self._features(level, batch)
            cached, states = [feats], [None]
        else:
            # Pass 1: every micro-batch's features without a graph, remembering the RNG.
            cached, states = [], []
            with torch.no_grad():
                for mb in micro:
                    states.append(self._rng_snapshot())
                    cached.append(self._features(level, mb)[0])
        neighbours = None
        if level == VIDEO:
            video_ids = [v for mb in micro for v in mb["video_id"]]
            video_emb = torch.cat([c["video"] for c in cached]).detach()
            neighbours = self.retrieval.neighbours(video_ids, video_emb)
        aux_loss = None
        if level == CLIP and self.ssl_aux is not None:
            with self._autocast():
                aux_loss = self.ssl_aux.loss(self.model.visual, self.step).float()
            self._check_finite(aux_loss, "the auxiliary SSL loss", level)
        neighbours_with_grad = None
        if neighbours is not None and self._neighbour_gradient:
            # soft_positive: the neighbours carry gradient from their own pixels. They are
            # encoded with the model itself (a second DDP forward in one step is not allowed;
            # DDP still reduces these gradients, as they reach the same parameters).
            with self._autocast():
                encoded = self.retrieval.neighbour_embeddings_with_grad(
                    lambda frames: self.model.encode_video(frames.to(self.device), normalize=True)
                )
            if encoded is not None:
                neighbours_with_grad = (encoded.float(), neighbours[1])

        losses: dict[str, torch.Tensor] = {}
        for j, mb in enumerate(micro):
            last = j == len(micro) - 1
            if accum > 1:
                # Pass 2: recompute micro-batch j with a graph, from the RNG state of pass 1.
                self._rng_restore(states[j])
                sync = contextlib.nullcontext() if last or not self.dist.distributed else self.encoder.no_sync()
            else:
                sync = contextlib.nullcontext()
            with sync:
                if accum > 1:
                    fresh, scale = self._features(level, mb)
                    # The logit scale enters every micro-batch's loss; let only the last one
                    # carry its gradient, so it is counted once, as in the full batch.
                    if not last:
                        scale = scale.detach()
                    feats = {k: torch.cat([c[k] for c in cached[:j]] + [fresh[k]] + [c[k] for c in cached[j + 1 :]]) for k in fresh}
                step_neighbours = neighbours
                if neighbours_with_grad is not None:
                    # Like the logit scale: only the last micro-batch's loss carries their gradient.
                    step_neighbours = neighbours_with_grad if last else (neighbours_with_grad[0].detach(), neighbours[1])
                losses = self.loss_fn(level, feats, scale, step_neighbours)
                if aux_loss is not None:
                    # Once per step (in the last micro-batch), like the gradient-carrying neighbours.
                    losses["ssl_aux"] = aux_loss.detach()
                    if last:
                        losses["total"] = losses["total"] + self.cfg.ssl_aux.weight * aux_loss
                if j == 0:
                    self._check_finite(losses["total"], "the loss", level)
                self.scaler.scale(losses["total"]).backward()
        return {k: float(all_reduce_mean(v.detach().float(), self.dist)) for k, v in losses.items()}

    def train_step(self) -> dict[str, Any]:
        """One optimizer step of the level the schedule picks for the current step."""
        level = self.schedule.level_at(self.step)
        start = time.perf_counter()
        batch = self.next_batch(level)
        self.model.train()
        losses = self.forward_backward(level, batch)
        grad_norm = self._optimizer_step(level)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.step += 1
        elapsed = time.perf_counter() - start
        global_batch = getattr(self.cfg.train, f"{level}_batch_size")
        metrics = {
            "level": level,
            "losses": losses,
            "lr": lr,
            "logit_scale": float(_logit_scale_value(self.model)),
            "grad_norm": grad_norm,
            "samples_per_s": global_batch / elapsed,
            "step_time_s": elapsed,
        }
        self._window.setdefault(level, []).append(losses)
        if level == CLIP:  # "best" is judged on the clip level, the one every run trains
            self._since_save.append(losses["total"])
        self._window_samples += global_batch
        self._window_time += elapsed
        return metrics

    def _optimizer_step(self, level: str) -> float:
        params = self.trainable_parameters
        if self.ssl_aux is not None and self.dist.distributed:
            # The DINO head sits outside the DDP module, so its gradient is averaged here.
            for p in self.ssl_aux.parameters():
                if p.grad is not None:
                    p.grad.copy_(all_reduce_mean(p.grad, self.dist))
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        if self.cfg.train.grad_clip_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip_norm)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if not self.scaler.is_enabled():
            # (With fp16 the scaler skips steps with inf/nan gradients and lowers its scale.)
            self._check_finite(norm, "the gradient norm", level)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        _clamp_logit_scale(self.model)
        if self.ssl_aux is not None and level == CLIP:
            self.ssl_aux.after_step(self.model.visual, self.step)
        return float(norm)

    # ------------------------------------------------------------------ loop
    def fit(self, progress: bool = True, on_log: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train until ``train.steps``; checkpoint every ``train.save_every`` steps and at the end."""
        t = self.cfg.train
        bar = None
        if progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="pretrain", unit="step", dynamic_ncols=True)
        try:
            while self.step < t.steps:
                metrics = self.train_step()
                if self.step % self.cfg.log.every == 0 or self.step == t.steps:
                    record = self._log(metrics)
                    if on_log is not None:
                        on_log(self.step, record)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.startswith("loss/")})
                if self.step % t.save_every == 0 or self.step == t.steps:
                    self.save()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            self.run_logger.close()
        return self._finish()

    def _log(self, last: dict[str, Any]) -> dict[str, Any]:
        """Means over the steps since the last log line: ``loss/<level>`` (total) and ``loss/<level>/<term>``."""
        record: dict[str, Any] = {}
        for level, items in self._window.items():
            for key in items[0]:
                name = f"loss/{level}" if key == "total" else f"loss/{level}/{key}"
                record[name] = float(np.mean([item[key] for item in items]))
        record.update(
            lr=last["lr"],
            logit_scale=last["logit_scale"],
            grad_norm=last["grad_norm"],
            samples_per_s=self._window_samples / max(self._window_time, 1e-9),
        )
        self.run_logger.log(self.step, record)
        self.history.append({"step": self.step, **record})
        logger.debug("step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        self._window, self._window_samples, self._window_time = {}, 0, 0.0
        return record

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.data_position(),
            "best_metric": self.best_metric,
            "world_size": self.dist.world_size,
            "config": to_dict(self.cfg),
            **({"retrieval": self.retrieval.state_dict()} if hasattr(self.retrieval, "state_dict") else {}),
            **({"ssl_aux": self.ssl_aux.state_dict()} if self.ssl_aux is not None else {}),
        }

    def save(self) -> Path | None:
        """Write ``latest.pt`` (and ``best.pt`` when the clip-level loss since the last save improved)."""
        rngs = gather_objects(ckpt.rng_state(), self.dist)  # every rank's, in rank order
        path = None
        if self.dist.is_main:
            metric = float(np.mean(self._since_save)) if self._since_save else math.inf
            improved = metric < self.best_metric
            if improved:
                self.best_metric = metric
            directory = ckpt.checkpoint_dir(self.output_dir)
            path = ckpt.save_checkpoint(directory / ckpt.LATEST, {**self.state_dict(), "rng": rngs})
            if improved:
                ckpt.copy_checkpoint(path, directory / ckpt.BEST)
            logger.info("saved %s at step %d%s", path, self.step, " (new best)" if improved else "")
        self.best_metric = _broadcast_float(self.best_metric, self.dist)
        self._since_save = []
        barrier(self.dist)
        return path

    def _load(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, map_location=self.device)
        changed = _diff(state.get("config", {}), to_dict(self.cfg))
        if changed:
            logger.warning("resuming from %s with a changed config: %s", path, ", ".join(changed[:8]))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ConfigError(f"{path}: its weights do not fit model {self.cfg.model.name!r} ({e})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ssl_aux is not None:
            if "ssl_aux" not in state:
                raise ConfigError(f"{path} was written without ssl_aux; resume with ssl_aux.weight=0, or start a fresh run")
            self.ssl_aux.load_state_dict(state["ssl_aux"])
        if "retrieval" in state and hasattr(self.retrieval, "load_state_dict"):
            self.retrieval.load_state_dict(state["retrieval"], self.model)
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        for level in LEVELS:
            self.consumed[level] = int(state["data"][level]["batches"])
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            logger.warning(
                "%s was written by %d rank(s), this run has %d: RNG streams restart from the seed "
                "(the data order is unaffected)", path, len(rngs), self.dist.world_size,
            )
        logger.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ end
    def _finish(self) -> dict[str, Any]:
        summary = self.summary()
        if self.dist.is_main:
            if hasattr(self.model, "save_pretrained"):
                info = {
                    "data_root": self.cfg.data.root,
                    "steps": self.step,
                    "counts": self.levels.counts,
                    "first_loss": summary["first_loss"],
                    "last_loss": summary["last_loss"],
                    "samples_per_s": summary["samples_per_s"],
                    "world_size": self.dist.world_size,
                }
                self.model.save_pretrained(self.output_dir / MODEL_DIR, training_info=info)
            self._write_run_json("finished", summary=summary)
        barrier(self.dist)
        return summary

    def summary(self) -> dict[str, Any]:
        """Per level: the first and last logged loss; median throughput over log windows."""
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for record in self.history:
            for key, value in record.items():
                if key.startswith("loss/") and key.count("/") == 1:
                    first.setdefault(key, value)
                    last[key] = value
        rates = [h["samples_per_s"] for h in self.history]
        return {
            "steps": self.step,
            "first_loss": first,
            "last_loss": last,
            "samples_per_s": float(np.median(rates)) if rates else float("nan"),
            "best_metric": self.best_metric,
            "output_dir": str(self.output_dir),
        }

    def _write_run_json(self, status: str, **extra: Any) -> None:
        path = self.output_dir / RUN_JSON
        previous: dict[str, Any] = {}
        if path.is_file():
            import json

            try:
                previous = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                previous = {}
        record = {
            "status": status,
            "started": previous.get("started", _now()),
            "updated": _now(),
            "config": to_dict(self.cfg),
            "versions": _versions(),
            "seed": self.cfg.train.seed,
            "model": {"name": self.cfg.model.name, "pretrained": self.cfg.model.pretrained},
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision,
            "counts": {**self.levels.counts, "text_cache": len(self.text_cache) if self.text_cache else 0},
            "step": self.step,
            **extra,
        }
        atomic_write_json(path, record)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _logit_multiplier(model: nn.Module) -> torch.Tensor:
    """The factor on cosine similarities: ``get_logit_scale()`` (clamped exp), else ``exp(logit_scale)``."""
    if hasattr(model, "get_logit_scale"):
        return model.get_logit_scale()
    return model.logit_scale.exp()


def _logit_scale_value(model: nn.Module) -> float:
    with torch.no_grad():
        return float(_logit_multiplier(model).float())


def _clamp_logit_scale(model: nn.Module) -> None:
    # open_clip clamps the stored log-scale after every optimizer step.
    if hasattr(model, "clamp_logit_scale_") and isinstance(getattr(model, "logit_scale", None), nn.Parameter):
        model.clamp_logit_scale_()


def _broadcast_float(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    from .distributed import broadcast_object

    return float(broadcast_object(value, info))


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, name + ".")
        elif va != vb:
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out


def pretrain(cfg: PretrainConfig, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) pretraining as the config says; return the summary.

    Under torchrun this joins the process group first and leaves it at the end.
    """
    info = init_distributed(cfg.train.device)
    try:
        return Trainer(cfg, resume=resume, dist=info).fit(progress=progress)
    finally:
        shutdown(info)
