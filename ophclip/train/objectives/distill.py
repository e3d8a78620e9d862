"""Teacher -> student distillation into a small real-time vision tower (``ophclip distill``).

The pieces (student builder, data, text bank, losses, agreement) are in :mod:`ophclip.distill`;
this objective runs them in the training engine, which gives distillation the same
checkpoints, exact resume, schedules and logs as pretraining. One step: the teacher encodes
a batch of windows under ``no_grad``, the student encodes the same (shared-augmented) view,
and :class:`ophclip.distill.DistillLoss` compares them. The batch of step ``s`` and the KL
bank's narration subset are pure functions of (seed, s).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import ophclip

from ...classifier import build_zero_shot_classifier
from ...data import LevelBatchSampler, collate
from ...distill import (
    DistillConfig,
    DistillLoss,
    TextBank,
    build_student,
    build_text_bank,
    encode_clip_batch,
    load_distill_data,
    measure_agreement,
    parameter_counts,
    prompt_sentences,
    validate,
)
from ...errors import ConfigError, DataError
from ..engine import Engine, EngineSettings, Objective, delegate, seed_everything, single_process

logger = logging.getLogger(__name__)

STUDENT_DIRNAME = "student"


class DistillObjective(Objective):
    """Distil ``cfg.teacher`` into a ``cfg.student`` vision tower in the teacher's embedding space."""

    name = "distill"

    def __init__(self, cfg: DistillConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        prompt_texts, phase_prompts = prompt_sentences(cfg.data.prompts)  # a bad prompt file fails before any model loads
        self.data = load_distill_data(cfg.data, cfg.train.seed)
        self.batch_size = min(cfg.train.batch_size, len(self.data.train))
        if self.batch_size < 2:
            raise DataError(f"only {len(self.data.train)} training window(s); distillation needs at least 2")
        self.sampler = LevelBatchSampler(len(self.data.train), self.batch_size, seed=cfg.train.seed, level="clip")

        teacher, _, self.teacher_pre = ophclip.create_model_and_transforms(cfg.teacher.name, pretrained=cfg.teacher.pretrained)
        teacher.requires_grad_(False)
        self.teacher = teacher.eval()
        saved = cfg.teacher.pretrained if cfg.teacher.pretrained and Path(cfg.teacher.pretrained).is_dir() else None
        tokenizer = ophclip.get_tokenizer(saved or cfg.teacher.name)
        self.student = build_student(teacher, cfg.student.name, image_size=cfg.student.image_size,
                                     projector=cfg.student.projector)
        _, self.student_pre = ophclip.build_transforms(self.student.config.preprocess_cfg)
        self.teacher.to(device)
        self.student.to(device)
        needs_text = cfg.loss.kl_weight > 0 or cfg.loss.contrastive_weight > 0
        self.bank: TextBank | None = build_text_bank(teacher, tokenizer, self.data.narrations, prompt_texts) if needs_text else None
        self.phase_classifier = (build_zero_shot_classifier(teacher, tokenizer, phase_prompts)
                                 if phase_prompts is not None else None)
        self.loss_fn = DistillLoss(cfg.loss)
        self.scale = teacher.get_logit_scale().detach()

    def parameter_groups(self) -> list[dict[str, Any]]:
        trainable = [p for p in self.student.parameters() if p.requires_grad]
        return [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": self.cfg.train.weight_decay},
                {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]

    def trainable_parameters(self, groups: list[dict[str, Any]]) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]  # the clip norm sums in model order

    def train_mode(self) -> None:
        self.student.train()

    def next_batch(self, step: int) -> dict[str, Any]:
        return collate([self.data.train[k] for k in self.sampler.global_batch_keys(step)])

    def samples_per_step(self) -> int:
        return self.batch_size

    def features(self, batch: dict[str, Any], engine: Engine) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            tf, tc = encode_clip_batch(self.teacher, self.teacher_pre, batch["frames"])
        sf, sc = encode_clip_batch(self.student, self.student_pre, batch["frames"])
        feats = {"student_frames": sf, "teacher_frames": tf, "student_clips": sc, "teacher_clips": tc}
        if self.bank is not None:
            ids = self.bank.ids(batch["text"])
            feats["text_ids"] = ids.to(self.device)
            feats["pair_texts"] = self.bank.embeddings[ids.clamp(min=0)].to(self.device)
        return {k: v.float() if v.is_floating_point() else v for k, v in feats.items()}

    def step_inputs(self, batch: dict[str, Any], features: dict[str, torch.Tensor], engine: Engine) -> torch.Tensor | None:
        """The KL term's texts: every prompt, a random subset of narrations, and the batch's own."""
        if self.bank is None:
            return None
        rng = np.random.default_rng([self.cfg.train.seed, engine.step])  # a pure function of the step
        columns = self.bank.columns(features["text_ids"].cpu(), self.cfg.data.max_bank_narrations, rng)
        return self.bank.embeddings[columns].to(self.device)

    def loss(self, features: dict[str, torch.Tensor], inputs: torch.Tensor | None, engine: Engine,
             last: bool) -> dict[str, torch.Tensor]:
        f = features
        return self.loss_fn(f["student_frames"], f["teacher_frames"], f["student_clips"], f["teacher_clips"], self.scale,
                            inputs, f.get("text_ids"), f.get("pair_texts"))

    def metrics(self, losses: dict[str, float]) -> dict[str, float]:
        # "+ 0.0" turns a switched-off term's -0.0 into 0.0 in the logs.
        return {("loss" if k == "total" else f"loss/{k}"): v + 0.0 for k, v in losses.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"student": self.student.state_dict(), "teacher_name": str(self.cfg.teacher.pretrained or self.cfg.teacher.name)}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        teacher = str(self.cfg.teacher.pretrained or self.cfg.teacher.name)
        if state.get("teacher_name", teacher) != teacher:
            raise ConfigError(f"{path} distils teacher {state['teacher_name']!r}, this run names {teacher!r}; "
                              "resume with the same teacher, or start a fresh run (another train.output_dir)")
        self.student.load_state_dict(state["student"])

    def run_info(self) -> dict[str, Any]:
        return {"teacher": str(self.cfg.teacher.pretrained or self.cfg.teacher.name), "student": self.cfg.student.name,
                "counts": self.data.counts}

    def finish(self, engine: Engine, summary: dict[str, Any]) -> dict[str, Any]:
        """Measure agreement on held-out videos and save the student as a complete model."""
        cfg, data = self.cfg, self.data
        held = data.holdout if data.holdout is not None else data.train
        agreement = measure_agreement(self.student, self.student_pre, self.teacher, self.teacher_pre, held, self.bank,
                                      self.phase_classifier, cfg.train.batch_size)
        agreement["measured_on"] = "held-out videos" if data.holdout is not None else "training windows (no held-out video)"
        params = {"student": parameter_counts(self.student), "teacher": parameter_counts(self.teacher)}
        compression = params["teacher"]["vision"] / max(1, params["student"]["vision"])
        info = {
            "data": f"distilled on {data.counts['train_windows']} windows of {cfg.data.root} "
                    f"({data.counts['narrated_windows']} narrated, {data.counts['silent_windows']} silent in all)",
            "teacher": str(cfg.teacher.pretrained or cfg.teacher.name),
            "text_tower": "copied verbatim from the teacher and frozen: the teacher's prompts work unchanged",
            "student_architecture": cfg.student.name,
            "vision_compression": f"{compression:.1f}x fewer vision parameters than the teacher",
            "metrics": {f"agreement/{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in agreement.items()},
            "distillation": {"steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                             "loss": dataclasses.asdict(cfg.loss), "seconds": round(engine.seconds, 1)},
        }
        student_dir = self.student.cpu().save_pretrained(engine.output_dir / STUDENT_DIRNAME, training_info=info)
        self.student.to(self.device)
        counts = {**data.counts, "parameters": params, "vision_compression": compression,
                  "final_loss": engine.losses[-1] if engine.losses else float("nan"),
                  "first_loss": engine.losses[0] if engine.losses else float("nan")}
        return {"student_dir": str(student_dir), "agreement": agreement, "counts": counts}


def engine_settings(cfg: DistillConfig) -> EngineSettings:
    t = cfg.train
    return EngineSettings(
        output_dir=t.output_dir, steps=t.steps, lr=t.lr, seed=t.seed, warmup_steps=t.warmup_steps,
        grad_clip_norm=t.grad_clip_norm if t.grad_clip_norm > 0 else None, precision="fp32",
        save_every=t.save_every, log_every=t.log_every,
    )


@dataclass
class DistillResult:
    student_dir: Path
    history: list[float]  # the total loss of every step
    agreement: dict[str, float]
    counts: dict[str, Any]
    seconds: float


class DistillTrainer(Engine):
    """The engine running :class:`DistillObjective` on one process."""

    objective: DistillObjective

    def __init__(self, cfg: DistillConfig, *, resume: str | Path | None = None):
        validate(cfg)
        self.cfg = cfg
        dist = single_process("distill", cfg.train.device)
        seed_everything(cfg.train.seed)
        super().__init__(DistillObjective(cfg, dist.device), engine_settings(cfg), config=cfg, resume=resume, dist=dist)

    student = delegate("student")


def distill(cfg: DistillConfig, *, progress: bool = True, resume: str | Path | None = None) -> DistillResult:
    """Train the student, measure agreement on held-out videos, save it (:mod:`ophclip.distill`)."""
    trainer = DistillTrainer(cfg, resume=resume)
    summary = trainer.fit(progress=progress)
    return DistillResult(Path(summary["student_dir"]), list(trainer.losses), summary["agreement"], summary["counts"],
                         trainer.seconds)
