"""OphCLIP's hierarchical contrastive objective: clip <-> narration, video <-> title summary.

One optimizer step trains one level, chosen by :class:`LevelSchedule` from the step
number: ``video_every`` clip-level steps (clip <-> narration), then one video-level step
(video <-> title summary, video <-> mean narration, and optionally retrieved silent
neighbours from the memory bank). Each level has its own loader and global batch size.
The data order is a function of (seed, level, epoch, position) and augmentation is seeded
per sample, so the stored data position resumes a run exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

import ophclip

from ...data import LEVELS, LevelBatchSampler, Levels, collate, load_levels
from ...distributed import DistInfo, all_reduce_mean
from ...errors import ConfigError, DataError
from ...loss import HierarchicalLoss, mean_text_per_video
from ...memory import NoRetrieval, RetrievalHook, SilentPoolBank
from ...schedule import CLIP, VIDEO, LevelSchedule
from ...ssl import SilentPoolSSL, load_vision_init
from ..config import PretrainConfig
from ..engine import Engine, Objective

logger = logging.getLogger(__name__)

MODEL_DIR = "final"  # <output_dir>/final: the save_pretrained folder evaluation commands take


@dataclass
class Components:
    """What the trainer needs from the model library (``ophclip.create_model_and_transforms``)."""

    model: nn.Module
    tokenizer: Callable[[list[str]], Any]
    preprocess_train: Callable | None
    preprocess_eval: Callable | None


def build_components(cfg: PretrainConfig) -> Components:
    """Create the named model, its tokenizer and transforms; an unknown name is a ConfigError."""
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
        load_vision_init(model, cfg.model.init_vision_from)
    if cfg.model.lock_image:
        model.lock_image_tower(cfg.model.lock_image_unlocked_groups, cfg.model.freeze_bn_stats)
    elif cfg.model.freeze_bn_stats:
        model.freeze_vision_bn_stats()
    return Components(model, ophclip.get_tokenizer(cfg.model.name), pre_train, pre_eval)


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
        out["logit_scale"] = logit_multiplier(self.model)
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
                tokens = to_device(tokenizer(unique[i : i + batch_size]), device)
                chunks.append(model.encode_text(tokens, normalize=True).float())
        model.train(was_training)
        self.table = torch.cat(chunks) if chunks else torch.empty(0)
        logger.info("cached frozen text embeddings of %d unique sentences", len(unique))

    def __len__(self) -> int:
        return len(self.row)

    def lookup(self, texts: list[str]) -> torch.Tensor:
        return self.table[[self.row[t] for t in texts]]


def to_device(tokens: Any, device: torch.device) -> Any:
    if isinstance(tokens, torch.Tensor):
        return tokens.to(device, non_blocking=True)
    if isinstance(tokens, dict):
        return {k: to_device(v, device) for k, v in tokens.items()}
    return tokens


def logit_multiplier(model: nn.Module) -> torch.Tensor:
    """The factor on cosine similarities: ``get_logit_scale()`` (clamped exp), else ``exp(logit_scale)``."""
    if hasattr(model, "get_logit_scale"):
        return model.get_logit_scale()
    return model.logit_scale.exp()


@dataclass
class StepInputs:
    """What a step computes once from the whole batch: the retrieved neighbours and the auxiliary SSL loss."""

    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None
    neighbours_with_grad: tuple[torch.Tensor, torch.Tensor] | None = None
    aux_loss: torch.Tensor | None = None


class ContrastiveObjective(Objective):
    """Hierarchical clip/video contrastive pretraining of one model on one dataset root.

    Args:
        cfg: the run config (validated by the caller against the world size).
        dist: process-group info (the objective builds its model on ``dist.device``).
        components: model, tokenizer and transforms; built from ``cfg.model`` when None.
        loss: ``loss(level, features, logit_scale, neighbours) -> dict`` with a ``"total"``
            entry; :class:`LevelLoss` over ``ophclip.loss.HierarchicalLoss(cfg.loss)`` when None.
        retrieval: the memory-bank hook (:class:`ophclip.memory.RetrievalHook`).
    """

    name = "pretrain"
    best_metric_key = "loss/clip"  # "best" is judged on the clip level, the one every run trains

    def __init__(self, cfg: PretrainConfig, dist: DistInfo, *, components: Components | None = None,
                 loss: Callable[..., dict[str, torch.Tensor]] | None = None, retrieval: RetrievalHook | None = None):
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        self.schedule = LevelSchedule(cfg.train.video_every)
        self.consumed = {level: 0 for level in LEVELS}  # batches drawn per level: the data position
        self.level = self.schedule.level_at(0)

        root = Path(cfg.data.root)
        if not (root / "clips.parquet").is_file() or not (root / "frames").is_dir():
            raise DataError(
                f"data.root = {str(root)!r} is not a dataset root (it needs clips.parquet, videos.parquet and "
                "frames/); build one with `ophclip pipeline run CONFIG`, or from the synthetic ground truth"
            )
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
        self.loss_fn = loss or LevelLoss(HierarchicalLoss(cfg.loss, rank=dist.rank, world_size=dist.world_size,
                                                          retrieval=cfg.retrieval))
        self.retrieval = retrieval or self._default_retrieval()
        self.ssl_aux = self._build_ssl_aux()
        self._neighbour_gradient = cfg.retrieval.mode == "soft_positive" and hasattr(
            self.retrieval, "neighbour_embeddings_with_grad"
        )
        self.encoder: nn.Module = _Encoder(self.model)
        self._iterators: dict[str, Iterator] = {}

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
        """The memory bank of the dataset root's silent pool, as ``cfg.retrieval`` says, when retrieval is on."""
        if not self.cfg.retrieval.enabled or self.cfg.train.video_every == 0:
            return NoRetrieval()
        return SilentPoolBank.from_dataset_root(
            self.cfg.retrieval,
            self.cfg.data.root,
            n_frames=self.cfg.data.video_frames,
            # Bank entries are encoded as evaluation sees videos: no augmentation.
            transform=self.components.preprocess_eval,
            dist=self.dist,
            progress=self.dist.is_main,
        )

    def _build_ssl_aux(self) -> SilentPoolSSL | None:
        """The auxiliary self-supervised loss on silent-pool clips (``ssl_aux``), or None when its weight is 0."""
        aux = self.cfg.ssl_aux
        if aux.weight == 0:
            return None
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

    def parameter_groups(self) -> list[dict[str, Any]]:
        # open_clip's rule: no weight decay on gains, biases, embeddings and the logit scale
        # (plus whatever the model lists in no_weight_decay()).
        named = set(self.model.no_weight_decay()) if hasattr(self.model, "no_weight_decay") else set()
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            exclude = p.ndim < 2 or name in named or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
            (no_decay if exclude else decay).append(p)
        wd = self.cfg.train.weight_decay
        groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]
        if self.ssl_aux is not None:  # the auxiliary loss's DINO head trains with the model
            groups.append({"params": list(self.ssl_aux.parameters()), "weight_decay": wd})
        return groups

    def trainable_parameters(self, groups: list[dict[str, Any]]) -> list[nn.Parameter]:
        # The model's own order, then the auxiliary head: the clip norm sums in the same order as ever.
        extra = list(self.ssl_aux.parameters()) if self.ssl_aux is not None else []
        return [p for p in [*self.model.parameters(), *extra] if p.requires_grad]

    def forward_module(self) -> nn.Module:
        return self.encoder

    def set_forward_module(self, module: nn.Module) -> None:
        self.encoder = module

    def train_mode(self) -> None:
        self.model.train()

    @property
    def context(self) -> str:
        return f"{self.level} level"

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

    def level_batch(self, level: str) -> dict[str, Any]:
        """The next batch of ``level`` for this rank; advances the level's data position."""
        if level not in self._iterators:
            self._iterators[level] = iter(self._loader(level))
        batch = next(self._iterators[level])
        self.consumed[level] += 1
        return batch

    def next_batch(self, step: int) -> dict[str, Any]:
        self.level = self.schedule.level_at(step)
        return self.level_batch(self.level)

    def samples_per_step(self) -> int:
        return getattr(self.cfg.train, f"{self.level}_batch_size")

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
    def prepare_step(self, engine: Engine) -> None:
        if self.level == VIDEO:  # re-encoding the silent pool costs no memory of this step's graph yet
            self.retrieval.maybe_refresh(engine.step, self.model)

    def features(self, batch: dict[str, Any], engine: Engine) -> dict[str, torch.Tensor]:
        """Embeddings of one (micro-)batch: video, text and, at the video level, the mean narration."""
        level = self.level
        frames = batch["frames"].to(self.device, non_blocking=True)
        texts: list[str] = list(batch["text"])
        narrations: list[list[str]] = []
        if level == VIDEO and self.cfg.loss.video_narration_weight > 0:
            narrations = list(batch["narrations"])
        flat = [s for sentences in narrations for s in sentences]
        tokens = None
        if self.text_cache is None:
            tokens = to_device(self.components.tokenizer(texts + flat), self.device)
        out = self.encoder(frames=frames, tokens=tokens, with_frames=level == CLIP and self.cfg.loss.frame_text_weight > 0)
        if self.text_cache is None:
            text_emb = out["text"].float()
        else:
            text_emb = self.text_cache.lookup(texts + flat).to(self.device)
        feats = {"video": out["video"].float(), "text": text_emb[: len(texts)], "logit_scale": out["logit_scale"]}
        if level == CLIP:
            feats["text_ids"] = torch.tensor([self._text_ids[t] for t in texts], device=self.device)
            if "frames" in out:
                feats["frames"] = out["frames"].float()
        elif flat:
            owner = torch.repeat_interleave(torch.arange(len(narrations)), torch.tensor([len(s) for s in narrations]))
            feats["narration"] = mean_text_per_video(text_emb[len(texts) :], owner.to(self.device), len(narrations))
        return feats

    def step_inputs(self, batch: dict[str, Any], features: dict[str, torch.Tensor], engine: Engine) -> StepInputs:
        inputs = StepInputs()
        if self.level == VIDEO:
            inputs.neighbours = self.retrieval.neighbours(list(batch["video_id"]), features["video"])
        if self.level == CLIP and self.ssl_aux is not None:
            with engine.autocast():
                inputs.aux_loss = self.ssl_aux.loss(self.model.visual, engine.step).float()
            engine.check_finite(inputs.aux_loss, "the auxiliary SSL loss")
        if inputs.neighbours is not None and self._neighbour_gradient:
            # soft_positive: the neighbours carry gradient from their own pixels. They are
            # encoded with the model itself (a second DDP forward in one step is not allowed;
            # DDP still reduces these gradients, as they reach the same parameters).
            with engine.autocast():
                encoded = self.retrieval.neighbour_embeddings_with_grad(
                    lambda frames: self.model.encode_video(frames.to(self.device), normalize=True)
                )
            if encoded is not None:
                inputs.neighbours_with_grad = (encoded.float(), inputs.neighbours[1])
        return inputs

    def loss(self, features: dict[str, torch.Tensor], inputs: StepInputs, engine: Engine, last: bool) -> dict[str, torch.Tensor]:
        scale = features["logit_scale"]
        if not last:
            # The logit scale enters every micro-batch's loss; let only the last one carry its
            # gradient, so it is counted once, as in the full batch. The same for the neighbours.
            scale = scale.detach()
        neighbours = inputs.neighbours
        if inputs.neighbours_with_grad is not None:
            grad = inputs.neighbours_with_grad
            neighbours = grad if last else (grad[0].detach(), grad[1])
        losses = self.loss_fn(self.level, features, scale, neighbours)
        if inputs.aux_loss is not None:
            # Once per step (in the last micro-batch), like the gradient-carrying neighbours.
            losses["ssl_aux"] = inputs.aux_loss.detach()
            if last:
                losses["total"] = losses["total"] + self.cfg.ssl_aux.weight * inputs.aux_loss
        return losses

    def metrics(self, losses: dict[str, float]) -> dict[str, float]:
        record = {(f"loss/{self.level}" if k == "total" else f"loss/{self.level}/{k}"): v for k, v in losses.items()}
        with torch.no_grad():
            record["logit_scale"] = float(logit_multiplier(self.model).float())
        return record

    def reduce_gradients(self, engine: Engine) -> None:
        if self.ssl_aux is not None and self.dist.distributed:
            # The DINO head sits outside the DDP module, so its gradient is averaged here.
            for p in self.ssl_aux.parameters():
                if p.grad is not None:
                    p.grad.copy_(all_reduce_mean(p.grad, self.dist))

    def after_optimizer_step(self, engine: Engine) -> dict[str, float]:
        # open_clip clamps the stored log-scale after every optimizer step.
        if hasattr(self.model, "clamp_logit_scale_") and isinstance(getattr(self.model, "logit_scale", None), nn.Parameter):
            self.model.clamp_logit_scale_()
        if self.ssl_aux is not None and self.level == CLIP:
            self.ssl_aux.after_step(self.model.visual, engine.step)
        return {}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "data": self.data_position(),
            **({"retrieval": self.retrieval.state_dict()} if hasattr(self.retrieval, "state_dict") else {}),
            **({"ssl_aux": self.ssl_aux.state_dict()} if self.ssl_aux is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ConfigError(f"{path}: its weights do not fit model {self.cfg.model.name!r} ({e})") from None
        if self.ssl_aux is not None:
            if "ssl_aux" not in state:
                raise ConfigError(f"{path} was written without ssl_aux; resume with ssl_aux.weight=0, or start a fresh run")
            self.ssl_aux.load_state_dict(state["ssl_aux"])
        if "retrieval" in state and hasattr(self.retrieval, "load_state_dict"):
            self.retrieval.load_state_dict(state["retrieval"], self.model)
        for level in LEVELS:
            self.consumed[level] = int(state["data"][level]["batches"])
        self._iterators = {}

    # ------------------------------------------------------------------ end
    def run_info(self) -> dict[str, Any]:
        return {
            "model": {"name": self.cfg.model.name, "pretrained": self.cfg.model.pretrained},
            "counts": {**self.levels.counts, "text_cache": len(self.text_cache) if self.text_cache else 0},
        }

    def finish(self, engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
        """Per level: the first and last logged loss; the model saved with ``save_pretrained``."""
        for key in ("first_loss", "last_loss"):
            summary[key] = {k: v for k, v in summary[key].items() if k.count("/") == 1}
        if hasattr(self.model, "save_pretrained"):
            info = {
                "data_root": self.cfg.data.root,
                "steps": engine.step,
                "counts": self.levels.counts,
                "first_loss": summary["first_loss"],
                "last_loss": summary["last_loss"],
                "samples_per_s": summary["samples_per_s"],
                "world_size": self.dist.world_size,
            }
            self.model.save_pretrained(engine.output_dir / MODEL_DIR, training_info=info)
        return {}
