"""The one training loop. Objectives (what is learned) plug into it; it owns how.

    objective = ContrastiveObjective(cfg, dist)           # or SSLObjective, DistillObjective
    engine = Engine(objective, settings, config=cfg, dist=dist, resume="latest")
    summary = engine.fit()

The engine owns the optimizer and its parameter groups, the learning-rate (and optional
weight-decay) schedule, mixed precision, DDP, gradient accumulation, gradient clipping,
the divergence check, checkpoint/resume, logging and ``run.json``. An :class:`Objective`
supplies the batches, the features, the loss and whatever happens around an optimizer
step (an EMA teacher, a clamped logit scale), and saves its artefacts at the end.

One step::

    batch = objective.next_batch(step)
    objective.prepare_step()                             # before any graph exists (a bank refresh)
    features = objective.features(batch)                 # per micro-batch, see below
    inputs = objective.step_inputs(batch, features)      # once per step (e.g. retrieved neighbours)
    losses = objective.loss(features, inputs, last)      # {"total": ..., term: ...}
    backward; objective.reduce_gradients(); clip; objective.before_optimizer_step(); optimizer.step();
    objective.after_optimizer_step()

Exactness: schedules are pure functions of the step, the objective's data order is a
function of (seed, step) or of its stored data position, and a checkpoint holds every
RNG state, so a resumed run retraces an uninterrupted one step for step. Gradient
accumulation caches the features of every micro-batch, then recomputes one micro-batch
at a time with gradient against the cached rest (open_clip's ``--accum-freq``),
restoring the RNG state of the first pass so the recomputed features equal the cached
ones; the gradient then equals the full batch's, which a contrastive loss needs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ophbase.device import resolve_device
from ophbase.io import atomic_write_json

from ..config import save_config, to_dict
from ..distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    launched_by_torchrun,
)
from ..errors import ConfigError, OphclipError
from ..schedule import cosine_between, cosine_with_warmup
from . import checkpoint as ckpt
from .logs import RunLogger

logger = logging.getLogger(__name__)

RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"


class TrainingDivergedError(OphclipError, FloatingPointError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class EngineSettings:
    """How to train, whatever the objective; each objective's config maps onto this."""

    output_dir: str
    steps: int
    lr: float
    seed: int = 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio after a linear warm-up
    warmup_steps: int = 0
    # Groups marked ``scheduled_decay`` follow a cosine from their weight decay to this (DINO); None: constant.
    weight_decay_end: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip_norm: float | None = None
    accum_freq: int = 1
    # auto: bf16 autocast on a GPU that supports it, fp16 + GradScaler on older GPUs, fp32 on CPU.
    precision: str = "auto"
    save_every: int = 100
    log_every: int = 10
    tensorboard: bool = True
    jsonl: bool = True


class Objective:
    """What is learned. Subclasses override what they need; the defaults do nothing.

    ``loss`` returns a dict of 0-d tensors with the weighted sum under ``"total"``;
    ``features`` returns a dict of tensors whose first dimension is the (micro-)batch
    (0-d tensors, such as a logit scale, are taken from the fresh micro-batch).
    """

    name = "train"
    # A logged key whose mean since the last checkpoint decides best.pt (None: no best.pt).
    best_metric_key: str | None = None

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: ``params``, ``weight_decay``, and optionally ``scheduled_decay: True``."""
        raise NotImplementedError

    def trainable_parameters(self, groups: list[dict[str, Any]]) -> list[nn.Parameter]:
        """The parameters whose gradient norm is clipped, in the order the norm sums them (float sums
        depend on it, so an objective keeps the order its model lists them in)."""
        return [p for g in groups for p in g["params"] if p.requires_grad]

    def forward_module(self) -> nn.Module | None:
        """The module whose forward carries every gradient; DDP wraps it when there are several ranks."""
        return None

    def set_forward_module(self, module: nn.Module) -> None:
        """Receives the (DDP-wrapped) forward module, to call in :meth:`features`."""

    def train_mode(self) -> None:
        """Put the trained modules in training mode (called before every step)."""

    def next_batch(self, step: int) -> dict[str, Any]:
        raise NotImplementedError

    def samples_per_step(self) -> int:
        """Samples in the last global batch (for throughput)."""
        return 0

    def prepare_step(self, engine: Engine) -> None:
        """Runs before the step's first forward pass (e.g. refresh a memory bank while no graph is alive)."""

    def features(self, batch: dict[str, Any], engine: Engine) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step_inputs(self, batch: dict[str, Any], features: dict[str, torch.Tensor], engine: Engine) -> Any:
        """Computed once per step from the whole batch's (detached) features, before the loss."""
        return None

    def loss(self, features: dict[str, torch.Tensor], inputs: Any, engine: Engine, last: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def split(self, batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
        """``parts`` micro-batches of ``batch`` (gradient accumulation)."""
        return split_batch(batch, parts)

    def metrics(self, losses: dict[str, float]) -> dict[str, float]:
        """The step's record, from its rank-averaged losses (names as logged)."""
        return {("loss" if k == "total" else f"loss/{k}"): v for k, v in losses.items()}

    def reduce_gradients(self, engine: Engine) -> None:
        """Average across ranks the gradients of parameters DDP does not own; runs before clipping."""

    def before_optimizer_step(self, engine: Engine) -> None:
        """Runs after clipping, right before ``optimizer.step()`` (e.g. drop a frozen layer's gradient)."""

    def after_optimizer_step(self, engine: Engine) -> dict[str, float]:
        """Runs after ``optimizer.step()``; may return extra metrics for the step's record."""
        return {}

    def should_log(self, step: int, record: dict[str, Any]) -> bool:
        """Log this step even off the ``log_every`` grid (e.g. a monitor ran)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """Everything the objective needs to resume exactly (models, teachers, data position)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None: ...

    def run_info(self) -> dict[str, Any]:
        """Extra fields for run.json (counts, model names)."""
        return {}

    def finish(self, engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
        """Save the trained artefacts; return fields to add to the summary. Called on rank 0 only."""
        return {}


def split_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """Slice every tensor or list whose length is the batch size into ``parts`` equal pieces."""
    size = len(batch["frames"])
    step = size // parts
    out = []
    for i in range(parts):
        out.append({k: v[i * step : (i + 1) * step] if _batched(v, size) else v for k, v in batch.items()})
    return out


def _batched(value: Any, size: int) -> bool:
    return isinstance(value, (torch.Tensor, list, tuple, np.ndarray)) and len(value) == size


def delegate(name: str, doc: str | None = None) -> property:
    """A property of an engine facade (``Trainer.model``) that reads and writes the objective's ``name``."""
    return property(lambda self: getattr(self.objective, name),
                    lambda self, value: setattr(self.objective, name, value), doc=doc or f"The objective's ``{name}``.")


def single_process(command: str, device: str) -> DistInfo:
    """Process info for an objective that trains on one process; under torchrun every rank would
    train its own copy on the same batches, so that is refused rather than wasting the GPUs."""
    if launched_by_torchrun():
        raise ConfigError(f"`ophclip {command}` trains on one process (one device); launch it without torchrun")
    return DistInfo(device=resolve_device(device, key="train.device"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision = fp16 needs a CUDA device; use fp32 (or bf16) on CPU")
    return precision


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("ophclip", "open_clip_torch", "transformers", "numpy", "pandas"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Engine:
    """Trains ``objective`` as ``settings`` say; see the module docstring.

    Args:
        objective: what is learned (already built on ``dist.device``).
        settings: the loop's settings.
        config: the run's typed config, written to config.yaml and run.json and stored in checkpoints.
        resume: ``"latest"``, ``"best"``, a checkpoint path, or None for a fresh run.
        dist: process-group info; read from torchrun's environment when None.
    """

    def __init__(self, objective: Objective, settings: EngineSettings, *, config: Any,
                 resume: str | Path | None = None, dist: DistInfo | None = None):
        self.objective = objective
        self.settings = settings
        self.config = config
        self.dist = dist or init_distributed()
        self.device = self.dist.device
        self.output_dir = Path(settings.output_dir)
        self.precision = resolve_precision(settings.precision, self.device)
        self.step = 0
        self.best_metric = math.inf

        groups = objective.parameter_groups()
        for group in groups:
            group["base_weight_decay"] = group.get("weight_decay", 0.0)
        self.trainable_parameters = objective.trainable_parameters(groups)
        # The fused kernel exists for CUDA and CPU; on CPU it is ~5x faster than the per-tensor
        # loop (1.5 s -> 0.3 s per ViT-B-16 step, benchmarks/perf_train_step.py's profile).
        fused = self.device.type in ("cuda", "cpu")
        self.optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps, fused=fused)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        module = objective.forward_module()
        if module is not None and self.dist.distributed:
            module = DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # Objectives may use different parts of the model on different steps (the
                # video level's temporal head), so some parameters sit out some steps.
                find_unused_parameters=True,
            )
            objective.set_forward_module(module)
        self.ddp_module = module if isinstance(module, DistributedDataParallel) else None

        # The model's init used the same seed on every rank; from here on a per-rank seed, so
        # dropout differs between ranks as it would between GPUs.
        seed_everything(settings.seed + self.dist.rank)
        resume_path = ckpt.resolve_resume(resume, self.output_dir)
        if resume_path is not None:
            self._load(resume_path)
        self._window: list[dict[str, float]] = []
        self._window_samples, self._window_time = 0, 0.0
        self._since_save: list[float] = []
        self.history: list[dict[str, Any]] = []  # the logged records
        self.losses: list[float] = []  # every step's total loss (this process's steps)
        self.seconds = 0.0  # wall time spent in train_step by this process
        self.run_logger = RunLogger(
            self.output_dir, enabled=self.dist.is_main, tensorboard=settings.tensorboard, jsonl=settings.jsonl,
            resume_step=self.step if resume_path is not None else None,
        )
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output_dir / CONFIG_YAML)
            self._write_run_json("running")

    # ------------------------------------------------------------------ schedules
    def lr_at(self, step: int) -> float:
        s = self.settings
        return s.lr * cosine_with_warmup(step, s.steps, s.warmup_steps, s.min_lr_ratio)

    def _apply_schedules(self) -> None:
        lr = self.lr_at(self.step)
        end = self.settings.weight_decay_end
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if end is not None and group.get("scheduled_decay"):
                group["weight_decay"] = cosine_between(group["base_weight_decay"], end, self.step, self.settings.steps)

    # ------------------------------------------------------------------ step
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def check_finite(self, value: torch.Tensor, what: str) -> float:
        """The value averaged over ranks; a NaN or inf stops the run before the optimizer step."""
        value = float(all_reduce_mean(value.detach().float(), self.dist))
        if not math.isfinite(value):
            latest = ckpt.checkpoint_dir(self.output_dir) / ckpt.LATEST
            kept = f"the last good checkpoint is {latest}" if latest.is_file() else "no checkpoint was written yet"
            if self.dist.is_main:
                self._write_run_json("diverged", error=f"{what} = {value} at step {self.step}")
            raise TrainingDivergedError(
                f"{what} became {value} at step {self.step}{self.objective_context()}; training stopped before the "
                f"optimizer step, and {kept}. Lower train.lr, set train.grad_clip_norm, or check the data of "
                f"this step, then rerun with --resume latest"
            )
        return value

    def objective_context(self) -> str:
        where = getattr(self.objective, "context", None)
        return f" ({where})" if where else ""

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        """Accumulate the gradient of the objective's loss on ``batch`` into ``.grad``; return the losses.

        Losses are averaged over ranks. Nothing is stepped; :meth:`train_step` does that.
        """
        objective, accum = self.objective, self.settings.accum_freq
        objective.prepare_step(self)
        micro = objective.split(batch, accum) if accum > 1 else [batch]
        if accum == 1:
            with self.autocast():
                cached = [objective.features(batch, self)]
            states: list[Any] = [None]
        else:
            # Pass 1: every micro-batch's features without a graph, remembering the RNG.
            cached, states = [], []
            with torch.no_grad():
                for mb in micro:
                    states.append(_rng_snapshot(self.device))
                    with self.autocast():
                        cached.append(objective.features(mb, self))
        whole = cached[0] if accum == 1 else _concat(cached, None, 0)
        inputs = objective.step_inputs(batch, {k: v.detach() for k, v in whole.items()}, self)
        losses: dict[str, torch.Tensor] = {}
        for j, mb in enumerate(micro):
            last = j == len(micro) - 1
            sync = contextlib.nullcontext()
            if accum > 1:
                # Pass 2: recompute micro-batch j with a graph, from the RNG state of pass 1.
                _rng_restore(states[j])
                if not last and self.ddp_module is not None:
                    sync = self.ddp_module.no_sync()
            with sync:
                if accum > 1:
                    with self.autocast():
                        fresh = objective.features(mb, self)
                    features = _concat(cached, fresh, j)
                else:
                    features = whole
                # The loss runs outside autocast: objectives hand it float32 features.
                losses = objective.loss(features, inputs, self, last)
                if j == 0:
                    self.check_finite(losses["total"], "the loss")
                self.scaler.scale(losses["total"]).backward()
        return {k: float(all_reduce_mean(v.detach().float(), self.dist)) for k, v in losses.items()}

    def train_step(self, batch: dict[str, Any] | None = None) -> dict[str, Any]:
        """One optimizer step on ``batch`` (the objective's next batch when None); returns the step's record."""
        start = time.perf_counter()
        self._apply_schedules()
        if batch is None:
            batch = self.objective.next_batch(self.step)
        self.objective.train_mode()
        losses = self.forward_backward(batch)
        lr = self.optimizer.param_groups[0]["lr"]
        grad_norm = self._optimizer_step()
        extra = self.objective.after_optimizer_step(self)
        self.step += 1
        elapsed = time.perf_counter() - start
        samples = self.objective.samples_per_step()
        record = {**self.objective.metrics(losses), **extra, "lr": lr, "grad_norm": grad_norm,
                  "samples_per_s": samples / elapsed if elapsed > 0 else float("nan"), "step_time_s": elapsed}
        self._window.append(record)
        self.losses.append(losses["total"])
        self.seconds += elapsed
        key = self.objective.best_metric_key
        if key is not None and key in record:
            self._since_save.append(record[key])
        self._window_samples += samples
        self._window_time += elapsed
        return record

    def _optimizer_step(self) -> float:
        self.objective.reduce_gradients(self)
        params = self.trainable_parameters
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        if self.settings.grad_clip_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip_norm)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if not self.scaler.is_enabled():
            # (With fp16 the scaler skips steps with inf/nan gradients and lowers its scale.)
            self.check_finite(norm, "the gradient norm")
        self.objective.before_optimizer_step(self)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    # ------------------------------------------------------------------ loop
    def fit(self, progress: bool = True, on_log: Callable[[int, dict[str, Any]], None] | None = None,
            stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``settings.steps``, or stop after step ``stop_at`` with a checkpoint there (a time-boxed
        run that ``--resume latest`` continues on the same schedules). Checkpoints every ``save_every`` steps."""
        s = self.settings
        end = s.steps if stop_at is None else min(stop_at, s.steps)
        bar = tqdm(total=s.steps, initial=self.step, desc=self.objective.name, unit="step", dynamic_ncols=True,
                   disable=not (progress and self.dist.is_main))
        try:
            while self.step < end:
                record = self.train_step()
                if self.step % s.log_every == 0 or self.step == s.steps or self.objective.should_log(self.step, record):
                    logged = self._log()
                    if on_log is not None:
                        on_log(self.step, logged)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items() if k.startswith("loss")})
                if self.step % s.save_every == 0 or self.step == end:
                    self.save()
                bar.update(1)
        finally:
            bar.close()
            self.run_logger.close()
        if self.step < s.steps:  # stopped early on purpose: resumable, nothing final is written
            if self.dist.is_main:
                self._write_run_json("stopped")
            return self.summary()
        return self._finish()

    def _log(self) -> dict[str, Any]:
        """Losses are means over the steps since the last log line; other values are the last step's."""
        record: dict[str, Any] = {}
        for item in self._window:
            for key, value in item.items():
                if not key.startswith("loss"):
                    record[key] = value
        keys = dict.fromkeys(k for item in self._window for k in item if k.startswith("loss"))
        for key in keys:
            record[key] = float(np.mean([item[key] for item in self._window if key in item]))
        record["samples_per_s"] = self._window_samples / max(self._window_time, 1e-9)
        record.pop("step_time_s", None)
        self.run_logger.log(self.step, record)
        self.history.append({"step": self.step, **record})
        logger.debug("step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))
        self._window, self._window_samples, self._window_time = [], 0, 0.0
        return record

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.objective.state_dict(),
            "objective": self.objective.name,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "world_size": self.dist.world_size,
            "config": to_dict(self.config),
        }

    def save(self) -> Path | None:
        """Write ``latest.pt`` (and ``best.pt`` when the objective's best metric since the last save improved)."""
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
        if self.dist.distributed:
            self.best_metric = float(broadcast_object(self.best_metric, self.dist))
        self._since_save = []
        barrier(self.dist)
        return path

    def _load(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, map_location=self.device)
        written_by = state.get("objective", self.objective.name)
        if written_by != self.objective.name:
            raise ConfigError(f"{path} is a checkpoint of `{written_by}`, not `{self.objective.name}`; "
                              f"resume from a {self.objective.name} run's checkpoint, or start a fresh run")
        changed = _diff(state.get("config", {}), to_dict(self.config))
        if changed:
            logger.warning("resuming from %s with a changed config: %s", path, ", ".join(changed[:8]))
        self.objective.load_state_dict(state, path)
        # load_state_dict replaces each group's settings with the saved ones; the schedule's own
        # keys come from this run's config (a checkpoint from before the engine lacks them).
        schedule_keys = [{k: g[k] for k in ("scheduled_decay", "base_weight_decay") if k in g}
                         for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, keys in zip(self.optimizer.param_groups, schedule_keys, strict=True):
            group.update(keys)
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_metric = float(state.get("best_metric", math.inf))
        rngs = state["rng"]
        if isinstance(rngs, dict):  # a single process's states (the first SSL trainer's format)
            rngs = [rngs]
        if len(rngs) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            logger.warning(
                "%s was written by %d rank(s), this run has %d: RNG streams restart from the seed "
                "(the data order is unaffected)", path, len(rngs), self.dist.world_size,
            )
        logger.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ end
    def summary(self) -> dict[str, Any]:
        """The first and last logged value of every loss; median throughput over log windows."""
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for record in self.history:
            for key, value in record.items():
                if key.startswith("loss"):
                    first.setdefault(key, value)
                    last[key] = value
        rates = [h["samples_per_s"] for h in self.history]
        return {
            "steps": self.step,
            "first_loss": first,
            "last_loss": last,
            "samples_per_s": float(np.median(rates)) if rates else float("nan"),
            # JSON has no infinity: None when no best was judged (no checkpoint yet, or no best_metric_key).
            "best_metric": self.best_metric if math.isfinite(self.best_metric) else None,
            "output_dir": str(self.output_dir),
        }

    def _finish(self) -> dict[str, Any]:
        summary = self.summary()
        if self.dist.is_main:
            summary.update(self.objective.finish(self, summary))
            self._write_run_json("finished", summary=summary)
        barrier(self.dist)
        return summary

    def _write_run_json(self, status: str, **extra: Any) -> None:
        path = self.output_dir / RUN_JSON
        previous: dict[str, Any] = {}
        if path.is_file():
            try:
                previous = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                previous = {}
        record = {
            "status": status,
            "objective": self.objective.name,
            "started": previous.get("started", _now()),
            "updated": _now(),
            "config": to_dict(self.config),
            "versions": versions(),
            "seed": self.settings.seed,
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision,
            "step": self.step,
            **self.objective.run_info(),
            **extra,
        }
        atomic_write_json(path, record)


def _concat(cached: list[dict[str, torch.Tensor]], fresh: dict[str, torch.Tensor] | None, j: int) -> dict[str, torch.Tensor]:
    """The batch's features with micro-batch ``j`` replaced by ``fresh`` (None: all cached)."""
    parts = [fresh if (fresh is not None and i == j) else c for i, c in enumerate(cached)]
    source = fresh if fresh is not None else cached[0]
    return {k: (source[k] if source[k].ndim == 0 else torch.cat([p[k] for p in parts])) for k in source}


def _rng_snapshot(device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _rng_restore(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


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
