"""Self-supervised pretraining of a registry vision tower: DINO/SVT self-distillation (or InfoNCE).

    trainer = SSLTrainer(cfg, resume="latest")
    summary = trainer.fit()

One step: every view of a batch of clips goes through the student (vision tower per frame,
mean over time, DINO head); the global views also go through the teacher under
``torch.no_grad``; the loss is backpropagated into the student only, and the teacher then
moves by EMA, ``t <- m t + (1 - m) s``. The teacher's parameters never require gradients.
With ``loss.progress_weight > 0`` the student's clip features also predict where each global
view lies in its video (a linear layer, binary cross-entropy), added to the SSL loss.

Schedules are pure functions of the step (the engine's cosine lr with linear warm-up and
weight decay ``weight_decay -> weight_decay_end``; here teacher momentum
``teacher_momentum -> 1`` and the teacher temperature's linear warm-up), and the batch at
step ``s`` is a pure function of (seed, s), so a checkpoint (student, teacher, centre,
optimizer, step, RNG states, monitor state) resumes a run exactly.

Writes ``<train.output_dir>/``: config.yaml, run.json, log.jsonl, tensorboard/,
checkpoints/latest.pt and vision/ (the teacher's vision tower, see :mod:`ophclip.ssl.export`).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from data_pipeline.frame_cache import FrameCache

from ...config import to_dict
from ...data import LevelBatchSampler
from ...errors import ConfigError, DataError
from ...schedule import cosine_between
from ...ssl.config import SSLConfig, validate
from ...ssl.export import load_vision_init, save_vision
from ...ssl.head import ClipEncoder, DINOHead, build_vision_tower, ema_update
from ...ssl.loss import SSLLoss, teacher_temperature
from ...ssl.monitor import KNNProbe, SSLCollapseError, spread_ratio
from ...ssl.views import MultiCropVideoViews, collate_views, ssl_video_ids, view_transforms
from ...transforms import build_transforms
from ..engine import Engine, EngineSettings, Objective, delegate, seed_everything, single_process

logger = logging.getLogger(__name__)

VISION_DIR = "vision"
SAMPLER_LEVEL = "video"  # LevelBatchSampler seeds its order per level name


class SSLObjective(Objective):
    """DINO/SVT (or InfoNCE) of ``cfg.model.name``'s vision tower on ``cfg.data.root``."""

    name = "ssl"

    def __init__(self, cfg: SSLConfig, device: torch.device, video_ids: list[str] | None = None):
        self.cfg = cfg
        self.device = device
        self.collapsed_checks = 0
        self.collapse_reported = False
        backbone, self.model_config = build_vision_tower(cfg.model.name, cfg.model.config_file)
        if cfg.model.init_from:
            load_vision_init(backbone, cfg.model.init_from)
        head = DINOHead(self.model_config.embed_dim, cfg.head)
        self.student = ClipEncoder(
            backbone, head, progress=cfg.loss.progress_weight > 0, feature_dim=self.model_config.embed_dim
        ).to(device)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)  # moved by EMA only
        self.loss_fn = SSLLoss(cfg.loss, cfg.head.out_dim).to(device)

        preprocess = self.model_config.preprocess_cfg
        g_tf, l_tf = view_transforms(preprocess, cfg.data.views)
        ids = video_ids if video_ids is not None else ssl_video_ids(cfg.data.root, cfg.data.kinds, cfg.data.exclude_splits)
        per_video = cfg.data.clips_per_video
        self.views = MultiCropVideoViews(ids, FrameCache(cfg.data.root), cfg.data.views, g_tf, l_tf,
                                         samples_per_video=per_video)
        if len(self.views) < cfg.train.batch_size:
            raise DataError(
                f"{cfg.data.root}: {len(ids)} usable video(s) of kind {cfg.data.kinds} x data.clips_per_video = "
                f"{per_video} samples, fewer than train.batch_size = {cfg.train.batch_size}; lower "
                "train.batch_size, raise data.clips_per_video or add videos"
            )
        self.sampler = LevelBatchSampler(len(self.views), cfg.train.batch_size, seed=cfg.train.seed,
                                         level=SAMPLER_LEVEL, groups=self.views.groups, group_size=per_video)
        self.probe = None
        if cfg.monitor.probe_labels:
            _, pre_eval = build_transforms(preprocess, None)
            self.probe = KNNProbe(cfg.monitor.probe_labels, cfg.monitor.probe_root or cfg.data.root, pre_eval,
                                  cfg.monitor.probe_max_frames)
        self._teacher_out: list[tuple[torch.Tensor, ...]] = []
        self._schedule: dict[str, float] = {}

    def parameter_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, p in self.student.named_parameters():
            if p.requires_grad:
                # Biases, norms, embeddings and prototype norms are not decayed (DINO, open_clip).
                (no_decay if p.ndim < 2 or "embedding" in name or name.endswith(".g") else decay).append(p)
        return [{"params": decay, "weight_decay": self.cfg.train.weight_decay, "scheduled_decay": True},
                {"params": no_decay, "weight_decay": 0.0}]

    def trainable_parameters(self, groups: list[dict[str, Any]]) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]  # the clip norm sums in model order

    def train_mode(self) -> None:
        self.student.train()

    def schedules(self, step: int) -> dict[str, float]:
        t = self.cfg.train
        return {"teacher_momentum": cosine_between(t.teacher_momentum, 1.0, step, t.steps),
                "teacher_temp": teacher_temperature(step, self.cfg.loss)}

    def next_batch(self, step: int) -> dict[str, Any]:
        """The views of step ``step``: a pure function of (seed, step)."""
        return collate_views([self.views[key] for key in self.sampler.global_batch_keys(step)])

    def samples_per_step(self) -> int:
        return self.cfg.train.batch_size

    def split(self, batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
        raise ConfigError("ssl has no gradient accumulation (views are lists per crop); lower train.batch_size instead")

    def features(self, batch: dict[str, Any], engine: Engine) -> dict[str, torch.Tensor]:
        self._schedule = self.schedules(engine.step)
        glob = [v.to(self.device, non_blocking=True) for v in batch["global"]]
        local = [v.to(self.device, non_blocking=True) for v in batch["local"]]
        with torch.no_grad():
            t_out = [self.teacher(v) for v in glob]
        s_out = [self.student(v) for v in glob + local]
        self._teacher_out = t_out
        # Views stacked on a leading view axis; the engine slices nothing here (no accumulation).
        feats = {
            "t_logits": torch.stack([o[1].float() for o in t_out]), "t_z": torch.stack([o[2].float() for o in t_out]),
            "s_logits": torch.stack([o[1].float() for o in s_out]), "s_z": torch.stack([o[2].float() for o in s_out]),
        }
        if self.student.progress is not None:
            feats["progress_loss"] = self.progress_loss(s_out[: len(glob)], batch["progress"].to(self.device))
        return feats

    def progress_loss(self, global_out: list[tuple[torch.Tensor, ...]], target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy between the predicted and true position of each global view, (B, G) targets."""
        logits = torch.stack([self.student.progress(out[0].float()).squeeze(-1) for out in global_out], dim=1)
        return F.binary_cross_entropy_with_logits(logits, target)

    def loss(self, features: dict[str, torch.Tensor], inputs: Any, engine: Engine, last: bool) -> dict[str, torch.Tensor]:
        student = {"logits": list(features["s_logits"]), "z": list(features["s_z"])}
        teacher = {"logits": list(features["t_logits"]), "z": list(features["t_z"])}
        self._center_before = self.loss_fn.center.clone()
        ssl_loss = self.loss_fn(student, teacher, self._schedule["teacher_temp"])
        out = {"ssl": ssl_loss, "total": ssl_loss}
        if "progress_loss" in features:
            out["progress"] = features["progress_loss"]
            out["total"] = ssl_loss + self.cfg.loss.progress_weight * out["progress"]
        self._teacher_logits = teacher["logits"]
        return out

    def metrics(self, losses: dict[str, float]) -> dict[str, float]:
        record = {"loss": losses["total"], **{f"schedule/{k}": v for k, v in self._schedule.items()}}
        if self.cfg.loss.method == "dino":
            record["loss/kl"] = losses["ssl"] - self.loss_fn.last_teacher_entropy  # CE = H(teacher) + KL
        if "progress" in losses:
            record["loss/progress"] = losses["progress"]
        return record

    def before_optimizer_step(self, engine: Engine) -> None:
        if engine.step < self.cfg.train.freeze_last_layer_steps:
            for p in self.student.head.prototypes.parameters():
                p.grad = None

    def after_optimizer_step(self, engine: Engine) -> dict[str, float]:
        ema_update(self.teacher, self.student, self._schedule["teacher_momentum"])
        record = {f"schedule/{k}": engine.optimizer.param_groups[0][k] for k in ("weight_decay",)}
        return {**record, **self._monitor(engine.step + 1)}

    def should_log(self, step: int, record: dict[str, Any]) -> bool:
        return any(k.startswith("monitor/") for k in record)

    # ------------------------------------------------------------- monitor
    @torch.no_grad()
    def _monitor(self, step: int) -> dict[str, float]:
        if step % self.cfg.monitor.every and step != self.cfg.train.steps:
            return {}
        t_out, teacher_temp = self._teacher_out, self._schedule["teacher_temp"]
        probs = F.softmax((self._teacher_logits[0] - self._center_before) / teacher_temp, dim=-1)
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())
        out = {
            "monitor/teacher_entropy": entropy,
            "monitor/teacher_entropy_ratio": entropy / math.log(probs.shape[1]),
            "monitor/feature_std_ratio": spread_ratio(t_out[0][0]),
            "monitor/head_std_ratio": spread_ratio(t_out[0][2]),
        }
        if self.probe is not None and (step % self.cfg.monitor.probe_every == 0 or step == self.cfg.train.steps):
            out["monitor/knn_acc"] = self.probe.accuracy(self.teacher.backbone, self.cfg.monitor.probe_k, self.device)
        self.check_collapse(out, step)
        return out

    def check_collapse(self, m: dict[str, float], step: int) -> None:
        """Count a collapsed check in ``m`` (the monitor values); warn or raise after ``monitor.patience``."""
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
            f"representation collapse at step {step}: {what}, for {self.collapsed_checks} consecutive checks. "
            f"Check that the frames in {self.cfg.data.root}/frames differ between videos and over time; otherwise "
            "lower train.lr (DINO scales it as 5e-4 x batch/256), raise train.teacher_momentum, or lower loss.teacher_temp"
        )
        if mon.on_collapse == "error":
            raise SSLCollapseError(message)
        if not self.collapse_reported:
            logger.warning("%s", message)
            self.collapse_reported = True

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "monitor": {"collapsed_checks": self.collapsed_checks, "collapse_reported": self.collapse_reported},
            "model_name": self.cfg.model.name,
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        if "teacher" not in state:
            raise ConfigError(f"{path} is not an `ophclip ssl` checkpoint (no teacher); resume from an SSL run's checkpoint")
        if state.get("model_name") != self.cfg.model.name:
            raise ConfigError(
                f"{path} was trained with model.name = {state.get('model_name')!r}, not {self.cfg.model.name!r}"
            )
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.loss_fn.load_state_dict(state["loss"])
        self.collapsed_checks = int(state["monitor"]["collapsed_checks"])
        self.collapse_reported = bool(state["monitor"]["collapse_reported"])

    # ------------------------------------------------------------------ end
    def run_info(self) -> dict[str, Any]:
        return {"model": {"name": self.cfg.model.name}, "counts": {"videos": len(self.views)}}

    def finish(self, engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
        monitor = {k: v for r in engine.history for k, v in r.items() if k.startswith("monitor/")}
        extra = {
            "method": self.cfg.loss.method,
            "first_loss": summary["first_loss"].get("loss", float("nan")),
            "last_loss": summary["last_loss"].get("loss", float("nan")),
            "clips_per_s": summary["samples_per_s"],
            "collapse_warned": self.collapse_reported,
            "last_monitor": monitor,
            "videos": len(self.views),
            "vision_dir": str(engine.output_dir / VISION_DIR),
        }
        save_vision(engine.output_dir / VISION_DIR, self.teacher.backbone, self.model_config,
                    {"ssl": {**summary, **extra}, "config": to_dict(self.cfg)})
        return extra


def engine_settings(cfg: SSLConfig) -> EngineSettings:
    t = cfg.train
    return EngineSettings(
        output_dir=t.output_dir, steps=t.steps, lr=t.lr, seed=t.seed, min_lr_ratio=t.min_lr_ratio,
        warmup_steps=t.warmup_steps, weight_decay_end=t.weight_decay_end, grad_clip_norm=t.grad_clip_norm,
        # bf16 autocast where the GPU has it, else fp32 (DINO's temperatures are too sharp for fp16).
        precision="bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32",
        save_every=t.save_every, log_every=cfg.log.every,
        tensorboard=cfg.log.tensorboard, jsonl=cfg.log.jsonl,
    )


class SSLTrainer(Engine):
    """The engine running :class:`SSLObjective` on one process (``ophclip ssl``)."""

    objective: SSLObjective

    def __init__(self, cfg: SSLConfig, *, resume: str | Path | None = None, video_ids: list[str] | None = None):
        validate(cfg)
        self.cfg = cfg
        dist = single_process("ssl", cfg.train.device)
        seed_everything(cfg.train.seed)
        objective = SSLObjective(cfg, dist.device, video_ids)
        super().__init__(objective, engine_settings(cfg), config=cfg, resume=resume, dist=dist)

    student = delegate("student")
    teacher = delegate("teacher")
    loss = delegate("loss_fn", "The SSL loss module (its DINO centre).")
    views = delegate("views")

    def batch(self, step: int) -> dict[str, Any]:
        return self.objective.next_batch(step)

    def progress_loss(self, global_out: list[tuple[torch.Tensor, ...]], target: torch.Tensor) -> torch.Tensor:
        return self.objective.progress_loss(global_out, target)


def run_ssl(cfg: SSLConfig, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Entry point of ``ophclip ssl``."""
    return SSLTrainer(cfg, resume=resume).fit(progress=progress)
