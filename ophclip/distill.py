"""Distillation of an OphCLIP dual encoder into a small, real-time student vision tower: the pieces.

The run is the training engine with :mod:`ophclip.train.objectives.distill`
(``ophclip distill``, or ``from ophclip.train.objectives.distill import distill``).

OVFM (Nat. Biomed. Eng. 2026) shrank its video model ~16x by distillation for use in the
operating room, but its student lost the zero-shot interface. Here the student keeps it:
it is trained into the *teacher's* joint embedding space, and it carries the teacher's
frozen text tower, so every prompt written for the teacher works with the student unchanged.

What is saved
    The student is saved as a complete :class:`~ophclip.model.OphCLIP` (``save_pretrained``):
    the student's vision tower, and a verbatim copy of the teacher's text tower, temporal
    pooling and logit scale. ``ophclip.create_model_and_transforms(<folder>)`` and
    ``get_tokenizer(<folder>)`` therefore work as for any model, and the model card names
    the teacher and the measured agreement. The text tower is duplicated on disk (for the
    MiniLM default about 90 MB) in exchange for a self-contained folder; a streaming
    deployment needs only the vision tower plus a saved classifier (:mod:`ophclip.stream`).

The student
    A registry config (``OphCLIP-student-ViT-Tiny``: open_clip ViT-Tiny, 5.5 M vision
    parameters at 224 px; ``OphCLIP-student-ViT-Micro``: a 2-layer, 96-wide ViT at 64 px)
    contributes only its ``vision_cfg`` and ``preprocess_cfg``. open_clip's towers end in a
    linear projection (ViT ``proj``, ModifiedResNet attention-pool ``c_proj``); with
    ``student.projector: linear`` that projection is built to the teacher's ``embed_dim``,
    which is the projector between the two spaces (nothing extra to save or load). With
    ``projector: none`` the student config's own ``embed_dim`` must equal the teacher's.
    The student takes the teacher's ``quick_gelu`` flag (one flag covers both towers in
    :class:`~ophclip.model.OphCLIPConfig`, and the copied text tower needs the teacher's).

Losses (:class:`DistillLoss`, weights by config; a zero weight switches a term off)
    1. ``frame`` / ``clip``: cosine regression, ``1 - cos(student, teacher)``, on per-frame
       and pooled clip embeddings;
    2. ``kl``: KL(teacher || student) between clip->text similarity distributions over a
       text bank = every narration sentence of the training clips (the batch's texts are
       among them) plus the prompt sentences of a prompt file, at the teacher's logit
       scale divided by ``kl_temperature`` (the loss is multiplied by its square, Hinton's
       convention, so gradients keep their size when the temperature changes);
    3. ``contrastive``: :class:`ophclip.loss.ClipLoss` between the student's clip
       embeddings and the teacher's embeddings of their narration (narrated clips only).

Data
    The dataset root's ``clips.parquet`` (narrated windows) plus windows tiled over the
    silent pool (``kind == silent`` in ``videos.parquet``), all read from the frame cache.
    Silent windows have no text: they feed the regression and KL terms only. A fraction
    of videos is held out to measure agreement (:func:`measure_agreement`).
"""

from __future__ import annotations

import copy
import importlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from data_pipeline.frame_cache import FrameCache
from data_pipeline.manifests import SILENT, manifest_path, read_manifest

from .classifier import encode_texts
from .data import ClipDataset, collate
from .errors import ConfigError, DataError, ModelError
from .factory import get_model_config
from .loss import ClipLoss
from .model import HFTextTower, OphCLIP
from .prompts import load_prompt_file

logger = logging.getLogger(__name__)

PROJECTORS = ("linear", "none")


# --------------------------------------------------------------------------- configuration


@dataclass
class TeacherSection:
    name: str = "OphCLIP-tiny-MiniLM"  # registered model name or a save_pretrained folder
    pretrained: str | None = None  # weights for a registered name (a saved folder, "openai")


@dataclass
class StudentSection:
    name: str = "OphCLIP-student-ViT-Micro"  # registry config whose vision tower becomes the student
    image_size: int | None = None  # input size override (null: the config's)
    projector: str = "linear"  # linear: the tower's output projection maps to the teacher's dim | none


@dataclass
class DistillDataSection:
    root: str = ""  # dataset root (clips.parquet, videos.parquet, frames/)
    clip_frames: int = 4
    clip_window_s: tuple[float, float] = (3.0, 5.0)
    text_column: str = "text"  # clips.parquet column holding the narration text
    silent: bool = True  # add windows of the silent pool (no text)
    silent_window_s: float = 4.0
    holdout_fraction: float = 0.2  # videos held out to measure agreement (at least one when > 0)
    augment: bool = True  # the same random crop/flip for teacher and student views
    crop_scale: tuple[float, float] = (0.7, 1.0)
    prompts: str | None = None  # prompt YAML; its sentences join the KL text bank, its phases the agreement
    # Videos whose videos.parquet `split` is listed are never distilled on (the synthetic held-out set).
    exclude_splits: list[str] = field(default_factory=lambda: ["eval"])
    max_bank_narrations: int = 2048  # narration sentences in the KL bank per step (batch texts always in)


@dataclass
class DistillLossCfg:
    frame_weight: float = 1.0
    clip_weight: float = 1.0
    kl_weight: float = 1.0
    kl_temperature: float = 1.0
    contrastive_weight: float = 0.0
    repeated_text: str = "ignore"  # see ophclip.loss.ClipLoss


@dataclass
class DistillTrainSection:
    output_dir: str = "runs/distill"
    steps: int = 300
    batch_size: int = 32
    lr: float = 1.0e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    grad_clip_norm: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    save_every: int = 100  # steps between checkpoints (resume with `ophclip distill ... --resume latest`)


@dataclass
class DistillConfig:
    """``ophclip distill``: configs/distill_*.yaml."""

    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    data: DistillDataSection = field(default_factory=DistillDataSection)
    loss: DistillLossCfg = field(default_factory=DistillLossCfg)
    train: DistillTrainSection = field(default_factory=DistillTrainSection)


def validate(cfg: DistillConfig) -> None:
    """Reject values that cannot work, naming the key."""
    if cfg.student.projector not in PROJECTORS:
        raise ConfigError(f"student.projector = {cfg.student.projector!r}; expected one of {PROJECTORS}")
    if not cfg.data.root:
        raise ConfigError("data.root is empty; give the dataset root (data.root=out/dataset)")
    if cfg.data.clip_frames < 1 or cfg.train.batch_size < 2 or cfg.train.steps < 1:
        raise ConfigError("data.clip_frames >= 1, train.batch_size >= 2 and train.steps >= 1 are required")
    if not 0.0 <= cfg.data.holdout_fraction < 1.0:
        raise ConfigError(f"data.holdout_fraction = {cfg.data.holdout_fraction}; expected a fraction in [0, 1)")
    weights = [cfg.loss.frame_weight, cfg.loss.clip_weight, cfg.loss.kl_weight, cfg.loss.contrastive_weight]
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(f"loss weights must be >= 0 with at least one > 0, got {weights}")
    if cfg.loss.kl_temperature <= 0:
        raise ConfigError(f"loss.kl_temperature = {cfg.loss.kl_temperature}; expected > 0")


# --------------------------------------------------------------------------- the student


def build_student(
    teacher, student_name: str, *, image_size: int | None = None, projector: str = "linear"
):
    """A new OphCLIP: ``student_name``'s vision tower in the teacher's embedding space, teacher's text side.

    The text tower, temporal pooling and logit scale are copied from ``teacher`` and frozen,
    so the student's similarities to any text are on the teacher's scale.
    """
    if projector not in PROJECTORS:
        raise ModelError(f"projector must be one of {PROJECTORS}, got {projector!r}")
    spec = get_model_config(student_name)
    if spec.embed_dim != teacher.embed_dim and projector == "none":
        raise ModelError(
            f"student {student_name} embeds into {spec.embed_dim} dimensions but teacher "
            f"{teacher.config.model_name} into {teacher.embed_dim}, and student.projector is 'none'; "
            f"set student.projector=linear (the student's output projection then maps to {teacher.embed_dim}), "
            f"or pick a student config with embed_dim {teacher.embed_dim}"
        )
    config = copy.deepcopy(teacher.config)
    config.vision_cfg = copy.deepcopy(spec.vision_cfg)
    # The student starts from random weights, so no normalisation of its own is owed: it takes the
    # teacher's (ImageNet mean/std for an ImageNet tower), and the bank, streaming and evaluation keep
    # seeing frames normalised one way. Only the input size is the student's.
    config.preprocess_cfg = copy.deepcopy(teacher.config.preprocess_cfg)
    config.preprocess_cfg.image_size = spec.preprocess_cfg.image_size
    if image_size is not None:
        config.vision_cfg.image_size = int(image_size)
        config.preprocess_cfg.image_size = int(image_size)
    config.text_frozen = True
    config.open_clip_arch = None  # open_clip's pretrained tags fit the teacher's vision tower, not this one
    config.model_name = f"{student_name}-distilled"
    # The copied text_cfg keeps the teacher's hf_model_path: save_pretrained takes the tokenizer files from there.
    hf_config = teacher.text.transformer.config if isinstance(teacher.text, HFTextTower) else None
    student = OphCLIP(config, hf_config=hf_config)  # text weights come from the teacher, not a download
    student.text.load_state_dict(teacher.text.state_dict())
    if teacher.temporal is not None:
        student.temporal.load_state_dict(teacher.temporal.state_dict())
    with torch.no_grad():
        student.logit_scale.copy_(teacher.logit_scale.detach())
    # The student lives in the teacher's space: only the vision tower learns.
    student.text.requires_grad_(False)
    if isinstance(student.logit_scale, nn.Parameter):
        student.logit_scale.requires_grad_(False)
    if student.temporal is not None:
        student.temporal.requires_grad_(False)
    return student


# --------------------------------------------------------------------------- data


class SharedAugment:
    """The same random crop (and flip) for every frame of a clip, in uint8, before either model's preprocessing.

    Teacher and student see the *same* view (each then resizes and normalises it its own way),
    which regression needs. Input and output: uint8 ``(T, H, W, 3)``.
    """

    def __init__(self, crop_scale: tuple[float, float] = (0.7, 1.0), hflip_prob: float = 0.5):
        self.crop_scale, self.hflip_prob = tuple(crop_scale), hflip_prob

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        size = tuple(x.shape[-2:])
        x = v2.Compose([v2.RandomResizedCrop(size, scale=self.crop_scale, antialias=True),
                        v2.RandomHorizontalFlip(self.hflip_prob)])(x)
        return x.permute(0, 2, 3, 1).contiguous()


def _uint8_frames(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames))


@dataclass
class DistillData:
    """Windows to distil on, split by video into training and held-out parts."""

    train: ClipDataset  # uint8 frames (T, H, W, 3)
    holdout: ClipDataset | None
    narrations: list[str]  # unique narration sentences of all windows
    counts: dict[str, int]


def silent_windows(root: Path, window_s: float) -> pd.DataFrame:
    """Windows of ``window_s`` seconds tiling each silent video of ``root`` (clip_id, video_id, start, end, text="")."""
    videos = read_manifest(root, "videos")
    ok = videos["status"].astype("string").fillna("").isin(["", "ok"]) & (videos["kind"].astype(str) == SILENT)
    cache = FrameCache(root)
    rows = []
    for vid in videos.loc[ok, "video_id"].astype(str):
        if vid not in cache:
            logger.warning("silent video %s has no frame-cache entry; skipped", vid)
            continue
        duration = cache.n_frames(vid) / cache.fps(vid)
        starts = np.arange(0.0, max(duration - window_s, 0.0) + 1e-9, window_s)
        for s in starts:
            rows.append({"clip_id": f"{vid}@{s:.2f}", "video_id": vid, "start": float(s),
                         "end": float(min(s + window_s, duration)), "text": ""})
    return pd.DataFrame(rows, columns=["clip_id", "video_id", "start", "end", "text"])


def load_distill_data(cfg: DistillDataSection, seed: int) -> DistillData:
    """Narrated clips plus the silent pool, held-out videos split off (see module docstring)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; give a dataset root written by `ophclip pipeline`")
    cache = FrameCache(root)
    clips = read_manifest(root, "clips")
    if cfg.text_column not in clips.columns:
        raise DataError(f"{manifest_path(root, 'clips')}: no column {cfg.text_column!r}; set data.text_column")
    clips = clips[["clip_id", "video_id", "start", "end", cfg.text_column]].rename(columns={cfg.text_column: "text"})
    clips["text"] = clips["text"].astype("string").fillna("").str.strip().astype(str)
    parts = [clips[clips["end"] > clips["start"]]]
    if cfg.silent:
        parts.append(silent_windows(root, cfg.silent_window_s))
    windows = pd.concat(parts, ignore_index=True)
    windows["video_id"] = windows["video_id"].astype(str)
    videos = read_manifest(root, "videos")
    if cfg.exclude_splits and "split" in videos.columns:
        excluded = set(videos.loc[videos["split"].astype(str).isin(cfg.exclude_splits), "video_id"].astype(str))
        windows = windows[~windows["video_id"].isin(excluded)]
        logger.info("left out %d video(s) of split(s) %s", len(excluded), cfg.exclude_splits)
    missing = sorted(set(windows["video_id"]) - set(cache.index.index))
    if missing:
        raise DataError(f"{manifest_path(root, 'clips')}: videos {missing[:5]} have no frame-cache entry in "
                        f"{cache.dir}; rerun the pipeline's frames stage")
    if windows.empty:
        raise DataError(f"{root}: no clips and no silent videos to distil on")
    video_ids = sorted(set(windows["video_id"]))
    n_hold = 0 if cfg.holdout_fraction == 0 else max(1, round(cfg.holdout_fraction * len(video_ids)))
    if n_hold >= len(video_ids):
        n_hold = 0
        logger.warning("only %d video(s): no held-out video for the agreement measure", len(video_ids))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(video_ids)[:n_hold].tolist())
    is_held = windows["video_id"].isin(held)

    def dataset(df: pd.DataFrame, train: bool) -> ClipDataset:
        return ClipDataset(df.reset_index(drop=True), cache, n_frames=cfg.clip_frames,
                           window_s=tuple(cfg.clip_window_s), text_column="text",
                           transform=SharedAugment(cfg.crop_scale) if (train and cfg.augment) else _uint8_frames,
                           train=train)

    train_ds = dataset(windows[~is_held], True)
    hold_ds = dataset(windows[is_held], False) if n_hold else None
    narrations = sorted({t for t in windows["text"] if t})
    counts = {"windows": len(windows), "narrated_windows": int((windows["text"] != "").sum()),
              "silent_windows": int((windows["text"] == "").sum()), "videos": len(video_ids),
              "heldout_videos": n_hold, "train_windows": len(train_ds),
              "heldout_windows": 0 if hold_ds is None else len(hold_ds), "narrations": len(narrations)}
    return DistillData(train_ds, hold_ds, narrations, counts)


# --------------------------------------------------------------------------- text bank and loss


@dataclass
class TextBank:
    """Teacher embeddings of every sentence the KL term compares with (frozen text tower: computed once)."""

    texts: list[str]
    embeddings: torch.Tensor  # (N, D), L2-normalised
    n_prompts: int  # the first n_prompts rows are prompt sentences, always compared with
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.texts)}

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Row of each text, -1 for an empty (silent) one."""
        return torch.tensor([self.index.get(t, -1) if t else -1 for t in texts], dtype=torch.long)

    def columns(self, batch_ids: torch.Tensor, max_narrations: int, rng: np.random.Generator) -> torch.Tensor:
        """Prompts + (all narrations, or a random ``max_narrations`` of them plus the batch's own)."""
        n = len(self.texts)
        prompts = np.arange(self.n_prompts)
        narr = np.arange(self.n_prompts, n)
        if len(narr) > max_narrations:
            narr = rng.choice(narr, max_narrations, replace=False)
        own = batch_ids[batch_ids >= 0].numpy()
        return torch.from_numpy(np.unique(np.concatenate([prompts, narr, own]).astype(np.int64)))


def prompt_sentences(prompts: str | Path | None) -> tuple[list[str], Any]:
    """Every sentence x template of every section of a prompt file, and its phase section (or None)."""
    if prompts is None:
        return [], None
    sections = load_prompt_file(prompts)
    texts = [t for ps in sections.values() for c in ps.class_names for t in ps.texts(c)]
    return list(dict.fromkeys(texts)), sections.get("phase")


def build_text_bank(teacher, tokenizer, narrations: Sequence[str], prompt_texts: Sequence[str]) -> TextBank:
    prompt_texts = list(dict.fromkeys(prompt_texts))
    seen = set(prompt_texts)
    texts = prompt_texts + [t for t in dict.fromkeys(narrations) if t not in seen]
    if not texts:
        raise DataError("the KL text bank is empty: the clips have no narration text and no prompt file was given; "
                        "set data.prompts or loss.kl_weight=0 and loss.contrastive_weight=0")
    emb = encode_texts(teacher, tokenizer, texts)
    return TextBank(texts, emb, len(prompt_texts))


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(a_i, b_i)`` over rows."""
    return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()


def similarity_kl(student: torch.Tensor, teacher: torch.Tensor, texts: torch.Tensor, scale: float | torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || p_student) of the softmax over ``texts`` of ``scale / temperature * cos``, times temperature^2.

    ``student``, ``teacher`` (B, D) and ``texts`` (N, D) are L2-normalised.
    """
    s = F.log_softmax(scale * student @ texts.T / temperature, dim=-1)
    t = F.log_softmax(scale * teacher @ texts.T / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


class DistillLoss(nn.Module):
    """The weighted distillation terms (module docstring); returns each term by name and ``total``."""

    def __init__(self, cfg: DistillLossCfg):
        super().__init__()
        self.cfg = cfg
        self.contrastive = ClipLoss(repeated_text=cfg.repeated_text)

    def forward(
        self,
        student_frames: torch.Tensor,
        teacher_frames: torch.Tensor,
        student_clips: torch.Tensor,
        teacher_clips: torch.Tensor,
        logit_scale: torch.Tensor | float,
        bank: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        pair_texts: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Frames ``(B*T, D)``, clips ``(B, D)`` (normalised); ``bank`` (N, D) the KL texts;
        ``text_ids`` (B,) a sentence id per clip (-1: silent) and ``pair_texts`` (B, D) its embedding."""
        c = self.cfg
        terms: dict[str, torch.Tensor] = {}
        zero = student_clips.sum() * 0.0
        terms["frame"] = cosine_distance(student_frames, teacher_frames) if c.frame_weight > 0 else zero
        terms["clip"] = cosine_distance(student_clips, teacher_clips) if c.clip_weight > 0 else zero
        if c.kl_weight > 0 and bank is not None and len(bank):
            terms["kl"] = similarity_kl(student_clips, teacher_clips, bank, logit_scale, c.kl_temperature)
        else:
            terms["kl"] = zero
        paired = text_ids is not None and pair_texts is not None and int((text_ids >= 0).sum()) >= 2
        if c.contrastive_weight > 0 and paired:
            m = text_ids >= 0
            scale = torch.as_tensor(logit_scale, dtype=student_clips.dtype)
            terms["contrastive"] = self.contrastive(student_clips[m], pair_texts[m], scale, text_ids[m])
        else:
            terms["contrastive"] = zero
        terms["total"] = (c.frame_weight * terms["frame"] + c.clip_weight * terms["clip"]
                          + c.kl_weight * terms["kl"] + c.contrastive_weight * terms["contrastive"])
        return terms


# --------------------------------------------------------------------------- forward passes


def encode_clip_batch(model, preprocess, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, T, H, W, 3)`` -> normalised frame ``(B*T, D)`` and clip ``(B, D)`` embeddings."""
    batch, steps = frames.shape[:2]
    device = model.logit_scale.device
    x = preprocess(frames.flatten(0, 1)).to(device)
    per_frame = model.encode_image(x)
    clip = model.pool_frames(per_frame.view(batch, steps, -1))
    return F.normalize(per_frame, dim=-1), F.normalize(clip, dim=-1)


@torch.no_grad()
def measure_agreement(student, student_pre, teacher, teacher_pre, dataset, bank: TextBank | None,
                      phase_classifier: torch.Tensor | None = None, batch_size: int = 32) -> dict[str, float]:
    """How closely the student follows the teacher on ``dataset`` (held-out windows, no augmentation).

    ``frame_cosine`` / ``clip_cosine``: mean cosine of the embeddings; ``text_top1_agreement``:
    fraction of clips whose most similar bank text is the same; ``phase_top1_agreement``: fraction
    of frames with the same zero-shot phase (with a prompt classifier); ``kl``: the KL term.
    """
    student.eval()
    teacher.eval()
    scale = float(teacher.get_logit_scale())
    sums = {"frame_cosine": 0.0, "clip_cosine": 0.0, "text_top1_agreement": 0.0, "phase_top1_agreement": 0.0,
            "kl": 0.0}
    n_frames = n_clips = 0
    for lo in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(lo, min(lo + batch_size, len(dataset)))])
        sf, sc = encode_clip_batch(student, student_pre, batch["frames"])
        tf, tc = encode_clip_batch(teacher, teacher_pre, batch["frames"])
        sums["frame_cosine"] += float(F.cosine_similarity(sf, tf, dim=-1).sum())
        sums["clip_cosine"] += float(F.cosine_similarity(sc, tc, dim=-1).sum())
        if bank is not None:
            texts = bank.embeddings.to(sc.device)
            sums["text_top1_agreement"] += float(((sc @ texts.T).argmax(1) == (tc @ texts.T).argmax(1)).sum())
            sums["kl"] += float(similarity_kl(sc, tc, texts, scale)) * len(sc)
        if phase_classifier is not None:
            clf = phase_classifier.to(sf.device)
            sums["phase_top1_agreement"] += float(((sf @ clf).argmax(1) == (tf @ clf).argmax(1)).sum())
        n_frames += len(sf)
        n_clips += len(sc)
    if n_clips == 0:
        raise DataError("no held-out windows to measure agreement on")
    out = {"frame_cosine": sums["frame_cosine"] / n_frames, "clip_cosine": sums["clip_cosine"] / n_clips,
           "n_clips": n_clips, "n_frames": n_frames}
    if bank is not None:
        out["text_top1_agreement"] = sums["text_top1_agreement"] / n_clips
        out["kl"] = sums["kl"] / n_clips
    if phase_classifier is not None:
        out["phase_top1_agreement"] = sums["phase_top1_agreement"] / n_frames
    return out


def parameter_counts(model) -> dict[str, int]:
    counts = model.num_parameters()
    return {"vision": counts["vision"], "text": counts["text"], "total": counts["total"]}


def __getattr__(name: str) -> Any:
    # Deprecated: the run moved to the training engine; these names forward there.
    if name in ("distill", "DistillResult"):
        warnings.warn(f"ophclip.distill.{name} moved to ophclip.train.objectives.distill.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module("ophclip.train.objectives.distill"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
