"""Self-supervised pretraining of a registry vision tower: DINO/SVT self-distillation (or InfoNCE).

    trainer = SSLTrainer(cfg, resume="latest")
    summary = trainer.fit()

One step: every view of a batch of clips goes through the student (vision tower per frame,
mean over time, DINO head); the global views also go through the teacher under
``torch.no_grad``; the loss is backpropagated into the student only, and the teacher then
moves by EMA, ``t <- m t + (1 - m) s``. The teacher's parameters never require gradients.
With ``loss.progress_weight > 0`` the student's clip features also predict where each global
view lies in its video (a linear layer, binary cross-entropy), added to the SSL loss.

Schedules are pure functions of the step (cosine: lr with linear warm-up, weight decay
``weight_decay -> weight_decay_end``, teacher momentum ``teacher_momentum -> 1``; teacher
temperature with a linear warm-up), and the batch at step ``s`` is a pure function of
(seed, s), so a checkpoint (student, teacher, centre, optimizer, step, RNG states, monitor
state) resumes a run exactly.

Writes ``<train.output_dir>/``: config.yaml, run.json, log.jsonl, tensorboard/,
checkpoints/latest.pt and vision/ (the teacher's vision tower, see :mod:`.export`).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from data_pipeline._io import atomic_write_json
from data_pipeline.frame_cache import FrameCache

from ..config import save_config, to_dict
from ..errors import ConfigError, DataError, OphclipError
from ..train import checkpoint as ckpt
from ..train.data import LevelBatchSampler
from ..train.distributed import launched_by_torchrun, resolve_device
from ..train.logs import RunLogger
from ..train.schedule import cosine_with_warmup
from ..transforms import build_transforms
from .config import SSLConfig, validate
from .export import load_vision_init, save_vision
from .head import ClipEncoder, DINOHead
from .loss import SSLLoss, teacher_temperature
from .views import MultiCropVideoViews, collate_views, ssl_video_ids, view_transforms

logger = logging.getLogger(__name__)

RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
VISION_DIR = "vision"
SAMPLER_LEVEL = "video"  # LevelBatchSampler seeds its order per level name


class SSLCollapseError(OphclipError):
    """The representation collapsed: every clip maps to (nearly) the same feature."""


def cosine_between(start: float, end: float, step: int, total: int) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total``), constant after."""
    progress = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_vision_tower(name: str, config_file: str | None = None) -> tuple[nn.Module, Any]:
    """The vision tower of registry model ``name`` (random init) and the model's config."""
    from open_clip.model import _build_vision_tower

    from ..factory import add_model_config, get_model_config, list_models

    if config_file:
        if not Path(config_file).is_file():
            raise ConfigError(f"model.config_file = {config_file!r} does not exist; give a JSON model config")
        add_model_config(config_file)
    if name not in list_models():
        raise ConfigError(
            f"model.name = {name!r} is not a known model; known models: {', '.join(list_models())}"
        )
    config = get_model_config(name)
    return _build_vision_tower(config.embed_dim, config.vision_cfg, config.quick_gelu), config


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``t <- m t + (1 - m) s`` for every parameter; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def spread_ratio(x: torch.Tensor) -> float:
    """Batch std of L2-normalised rows times sqrt(D): ~1 for spread features, 0 for one point."""
    if x.shape[0] < 2:
        return float("nan")
    z = F.normalize(x.float(), dim=-1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def knn_accuracy(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, k: int
) -> float:
    """Cosine k-nearest-neighbour majority vote (ties -> the smallest label)."""
    sims = F.normalize(test_x, dim=-1) @ F.normalize(train_x, dim=-1).T
    nn_idx = sims.topk(min(k, train_x.shape[0]), dim=1).indices.numpy()
    classes = np.unique(train_y)
    votes = (train_y[nn_idx][:, :, None] == classes[None, None, :]).sum(1)
    return float((classes[votes.argmax(1)] == test_y).mean())


class KNNProbe:
    """Frames of a labelled probe set, split by video (alternate videos train / test), for kNN accuracy."""

    def __init__(self, labels_path: str | Path, root: str | Path, preprocess_eval, max_frames: int):
        path = Path(labels_path)
        if not path.is_file():
            raise ConfigError(
                f"monitor.probe_labels = {str(path)!r} does not exist; give a table of video_id, time_s, label"
            )
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        missing = {"video_id", "time_s", "label"} - set(table.columns)
        if missing:
            raise DataError(
                f"{path}: probe labels need columns video_id, time_s, label; missing {sorted(missing)}"
            )
        cache = FrameCache(root)
        table = table.assign(video_id=table["video_id"].astype(str))
        known = table["video_id"].isin(set(cache.index.index))
        if not known.all():
            logger.warning(
                "%s: %d probe row(s) name videos outside the frame cache of %s; skipped",
                path,
                int((~known).sum()),
                root,
            )
        table = table[known].sort_values(["video_id", "time_s"]).reset_index(drop=True)
        if len(table) > max_frames:
            table = table.iloc[np.linspace(0, len(table) - 1, max_frames).round().astype(int)].reset_index(
                drop=True
            )
        videos = sorted(table["video_id"].unique())
        if len(videos) < 2:
            raise DataError(
                f"{path}: the kNN probe needs labelled frames of at least 2 cached videos, found {len(videos)}"
            )
        frames = [
            cache.get(v, [int(np.floor(t * cache.fps(v)))])[0]
            for v, t in zip(table["video_id"], table["time_s"], strict=True)
        ]
        self.images = preprocess_eval(np.stack(frames))
        self.labels = table["label"].astype(str).to_numpy()
        test_videos = set(videos[1::2])
        self.is_test = np.array(table["video_id"].isin(test_videos).to_numpy(), dtype=bool)  # writable copy

    @torch.no_grad()
    def accuracy(self, tower: nn.Module, k: int, device: torch.device, batch: int = 256) -> float:
        was = tower.training
        tower.eval()
        feats = torch.cat(
            [
                tower(self.images[i : i + batch].to(device)).float().cpu()
                for i in range(0, len(self.images), batch)
            ]
        )
        tower.train(was)
        te = torch.from_numpy(self.is_test.copy())
        return knn_accuracy(feats[~te], self.labels[~self.is_test], feats[te], self.labels[self.is_test], k)


class SSLTrainer:
    """DINO/SVT (or InfoNCE) pretraining of ``cfg.model.name``'s vision tower on ``cfg.data.root``."""

    def __init__(
        self, cfg: SSLConfig, *, resume: str | Path | None = None, video_ids: list[str] | None = None
    ):
        validate(cfg)
        if launched_by_torchrun():
            # Each rank would train its own copy on the same batches; refuse rather than waste the GPUs.
            raise ConfigError("`ophclip ssl` trains on one process (one device); launch it without torchrun")
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.output_dir = Path(cfg.train.output_dir)
        self.step = 0
        self.collapsed_checks = 0
        self.collapse_reported = False

        _seed_everything(cfg.train.seed)
        backbone, self.model_config = build_vision_tower(cfg.model.name, cfg.model.config_file)
        if cfg.model.init_from:
            load_vision_init(backbone, cfg.model.init_from)
        head = DINOHead(self.model_config.embed_dim, cfg.head)
        self.student = ClipEncoder(
            backbone, head, progress=cfg.loss.progress_weight > 0, feature_dim=self.model_config.embed_dim
        ).to(self.device)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)  # moved by EMA only
        self.loss = SSLLoss(cfg.loss, cfg.head.out_dim).to(self.device)

        preprocess = self.model_config.preprocess_cfg
        g_tf, l_tf = view_transforms(preprocess, cfg.data.views)
        ids = (
            video_ids
            if video_ids is not None
            else ssl_video_ids(cfg.data.root, cfg.data.kinds, cfg.data.exclude_splits)
        )
        per_video = cfg.data.clips_per_video
        self.views = MultiCropVideoViews(
            ids, FrameCache(cfg.data.root), cfg.data.views, g_tf, l_tf, samples_per_video=per_video
        )
        if len(self.views) < cfg.train.batch_size:
            raise DataError(
                f"{cfg.data.root}: {len(ids)} usable video(s) of kind {cfg.data.kinds} x data.clips_per_video = "
                f"{per_video} samples, fewer than train.batch_size = {cfg.train.batch_size}; lower "
                "train.batch_size, raise data.clips_per_video or add videos"
            )
        self.sampler = LevelBatchSampler(
            len(self.views),
            cfg.train.batch_size,
            seed=cfg.train.seed,
            level=SAMPLER_LEVEL,
            groups=self.views.groups,
            group_size=per_video,
        )
        self.probe = None
        if cfg.monitor.probe_labels:
            _, pre_eval = build_transforms(preprocess, None)
            self.probe = KNNProbe(
                cfg.monitor.probe_labels,
                cfg.monitor.probe_root or cfg.data.root,
                pre_eval,
                cfg.monitor.probe_max_frames,
            )

        decay, no_decay = [], []
        for name, p in self.student.named_parameters():
            if p.requires_grad:
                # Biases, norms, embeddings and prototype norms are not decayed (DINO, open_clip).
                (no_decay if p.ndim < 2 or "embedding" in name or name.endswith(".g") else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.train.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.train.lr,
        )
        self.autocast_dtype = (
            torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else None
        )

        resume_path = ckpt.resolve_resume(resume, self.output_dir)
        if resume_path is not None:
            self._load(resume_path)
        self.history: list[dict[str, Any]] = []
        self.run_logger = RunLogger(
            self.output_dir,
            tensorboard=cfg.log.tensorboard,
            jsonl=cfg.log.jsonl,
            resume_step=self.step if resume_path is not None else None,
        )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.output_dir / CONFIG_YAML)

    # ------------------------------------------------------------ schedules
    def schedules(self, step: int) -> dict[str, float]:
        t = self.cfg.train
        return {
            "lr": t.lr * cosine_with_warmup(step, t.steps, t.warmup_steps, t.min_lr_ratio),
            "weight_decay": cosine_between(t.weight_decay, t.weight_decay_end, step, t.steps),
            "teacher_momentum": cosine_between(t.teacher_momentum, 1.0, step, t.steps),
            "teacher_temp": teacher_temperature(step, self.cfg.loss),
        }

    def batch(self, step: int) -> dict[str, Any]:
        """The views of step ``step``: a pure function of (seed, step)."""
        return collate_views([self.views[key] for key in self.sampler.global_batch_keys(step)])

    # ---------------------------------------------------------------- step
    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        sched = self.schedules(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = sched["lr"]
        self.optimizer.param_groups[0]["weight_decay"] = sched["weight_decay"]  # group 1 is never decayed
        glob = [v.to(self.device, non_blocking=True) for v in batch["global"]]
        local = [v.to(self.device, non_blocking=True) for v in batch["local"]]
        self.student.train()
        with self._autocast():
            with torch.no_grad():
                t_out = [self.teacher(v) for v in glob]
            s_out = [self.student(v) for v in glob + local]
            teacher = {"logits": [o[1].float() for o in t_out], "z": [o[2].float() for o in t_out]}
            student = {"logits": [o[1].float() for o in s_out], "z": [o[2].float() for o in s_out]}
            center_before = self.loss.center.clone()
            ssl_loss = self.loss(student, teacher, sched["teacher_temp"])
            loss = ssl_loss
            if self.student.progress is not None:
                progress_loss = self.progress_loss(s_out[: len(glob)], batch["progress"].to(self.device))
                loss = ssl_loss + self.cfg.loss.progress_weight * progress_loss
        if not torch.isfinite(loss):
            raise OphclipError(
                f"SSL loss is {loss.item()} at step {self.step}; lower train.lr or raise train.warmup_steps "
                f"(the last good checkpoint is {ckpt.checkpoint_dir(self.output_dir) / ckpt.LATEST})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float("nan")
        if self.cfg.train.grad_clip_norm:
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.train.grad_clip_norm)
            )
        if self.step < self.cfg.train.freeze_last_layer_steps:
            for p in self.student.head.prototypes.parameters():
                p.grad = None
        self.optimizer.step()
        ema_update(self.teacher, self.student, sched["teacher_momentum"])
        self.step += 1

        metrics = {
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            **{f"schedule/{k}": v for k, v in sched.items()},
        }
        if self.cfg.loss.method == "dino":
            metrics["loss/kl"] = float(ssl_loss.detach()) - self.loss.last_teacher_entropy  # CE = H(teacher) + KL
        if self.student.progress is not None:
            metrics["loss/progress"] = float(progress_loss.detach())
        metrics.update(self._monitor(t_out, teacher["logits"], center_before, sched["teacher_temp"]))
        return metrics

    def progress_loss(self, global_out: list[tuple[torch.Tensor, ...]], target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy between the predicted and true position of each global view, (B, G) targets."""
        logits = torch.stack([self.student.progress(out[0].float()).squeeze(-1) for out in global_out], dim=1)
        return F.binary_cross_entropy_with_logits(logits, target)

    # ------------------------------------------------------------- monitor
    @torch.no_grad()
    def _monitor(self, t_out, t_logits, center, teacher_temp: float) -> dict[str, float]:
        if self.step % self.cfg.monitor.every and self.step != self.cfg.train.steps:
            return {}
        feats = t_out[0][0]
        probs = F.softmax((t_logits[0] - center) / teacher_temp, dim=-1)
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())
        out = {
            "monitor/teacher_entropy": entropy,
            "monitor/teacher_entropy_ratio": entropy / math.log(probs.shape[1]),
            "monitor/feature_std_ratio": spread_ratio(feats),
            "monitor/head_std_ratio": spread_ratio(t_out[0][2]),
        }
        if self.probe is not None and (
            self.step % self.cfg.monitor.probe_every == 0 or self.step == self.cfg.train.steps
        ):
            out["monitor/knn_acc"] = self.probe.accuracy(
                self.teacher.backbone, self.cfg.monitor.probe_k, self.device
            )
        self._check_collapse(out)
        return out

    def _check_collapse(self, m: dict[str, float]) -> None:
        mon = self.cfg.monitor
        spread = min(m["monitor/feature_std_ratio"], m["monitor/head_std_ratio"])
        entropy = m["monitor/teacher_entropy_ratio"]
        collapsed_spread = spread < mon.min_feature_std_ratio
        # Only DINO's targets are the centred, sharpened teacher distribution the entropy describes.
        collapsed_uniform = self.cfg.loss.method == "dino" and entropy > mon.max_entropy_ratio
        if not (collapsed_spread or collapsed_uniform):
            self.collapsed_checks = 0
            return
        self.collapsed_checks += 1
        m["monitor/collapsed"] = 1.0
        if self.collapsed_checks < mon.patience:
            return
        if collapsed_spread:
            what = (
                f"the teacher's feature spread is {spread:.2e} (backbone {m['monitor/feature_std_ratio']:.2e}, "
                f"head {m['monitor/head_std_ratio']:.2e}), below monitor.min_feature_std_ratio = "
                f"{mon.min_feature_std_ratio}: every clip maps to nearly the same point"
            )
        else:
            what = (
                f"the teacher's output entropy is {entropy:.4f} of its maximum, above monitor.max_entropy_ratio = "
                f"{mon.max_entropy_ratio}: centring dominates and every clip gets the uniform distribution"
            )
        message = (
            f"representation collapse at step {self.step}: {what}, for {self.collapsed_checks} consecutive checks. "
            f"Check that the frames in {self.cfg.data.root}/frames differ between videos and over time; otherwise "
            "lower train.lr (DINO scales it as 5e-4 x batch/256), raise train.teacher_momentum, or lower loss.teacher_temp"
        )
        if mon.on_collapse == "error":
            raise SSLCollapseError(message)
        if not self.collapse_reported:
            logger.warning("%s", message)
            self.collapse_reported = True

    # ---------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "monitor": {
                "collapsed_checks": self.collapsed_checks,
                "collapse_reported": self.collapse_reported,
            },
            "rng": ckpt.rng_state(),
            "model_name": self.cfg.model.name,
        }

    def save(self) -> Path:
        return ckpt.save_checkpoint(ckpt.checkpoint_dir(self.output_dir) / ckpt.LATEST, self.state())

    def _load(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, map_location=self.device)
        if "teacher" not in state:
            raise ConfigError(
                f"{path} is not an `ophclip ssl` checkpoint (no teacher); resume from an SSL run's checkpoint"
            )
        if state.get("model_name") != self.cfg.model.name:
            raise ConfigError(
                f"{path} was trained with model.name = {state.get('model_name')!r}, not {self.cfg.model.name!r}"
            )
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.collapsed_checks = int(state["monitor"]["collapsed_checks"])
        self.collapse_reported = bool(state["monitor"]["collapse_reported"])
        ckpt.set_rng_state(state["rng"])
        logger.info("resumed SSL run from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ fit
    def fit(self, progress: bool = False, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (or stop after step ``stop_at``, saving a checkpoint there: a time-boxed run
        that ``--resume latest`` continues on the same schedules)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        end = cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps)
        start_step, t0 = self.step, time.perf_counter()
        bar = tqdm(total=cfg.train.steps, initial=self.step, desc="ssl", disable=not progress)
        try:
            while self.step < end:
                metrics = self.train_step(self.batch(self.step))
                record = {"step": self.step, **metrics}
                self.history.append(record)
                if (
                    self.step % cfg.log.every == 0
                    or self.step == cfg.train.steps
                    or any(k.startswith("monitor/") for k in metrics)
                ):
                    self.run_logger.log(self.step, metrics)
                if self.step % cfg.train.save_every == 0 or self.step == end:
                    self.save()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        finally:
            bar.close()
            self.run_logger.flush()
        elapsed = time.perf_counter() - t0
        losses = [r["loss"] for r in self.history]
        summary = {
            "steps": self.step,
            "method": cfg.loss.method,
            "first_loss": losses[0] if losses else float("nan"),
            "last_loss": losses[-1] if losses else float("nan"),
            "clips_per_s": (self.step - start_step) * cfg.train.batch_size / elapsed
            if elapsed > 0
            else float("nan"),
            "collapse_warned": self.collapse_reported,
            "last_monitor": {k: v for r in self.history for k, v in r.items() if k.startswith("monitor/")},
            "videos": len(self.views),
            "output_dir": str(self.output_dir),
            "vision_dir": str(self.output_dir / VISION_DIR),
        }
        save_vision(
            self.output_dir / VISION_DIR,
            self.teacher.backbone,
            self.model_config,
            {"ssl": summary, "config": to_dict(cfg)},
        )
        atomic_write_json(
            self.output_dir / RUN_JSON, {"summary": summary, "config": to_dict(cfg), "versions": _versions()}
        )
        self.run_logger.close()
        return summary


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _versions() -> dict[str, str]:
    import importlib.metadata
    import platform

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("ophclip", "open_clip_torch", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run_ssl(cfg: SSLConfig, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Entry point of ``ophclip ssl``."""
    return SSLTrainer(cfg, resume=resume).fit(progress=progress)
