"""Frame preprocessing shared by training and evaluation.

Both transforms are built from the same :class:`PreprocessCfg` (size, mean, std,
interpolation) stored in the model config, so normalisation cannot drift between
pretraining and evaluation (the OVFM anti-pattern in STYLE.md). Training only adds
the augmentations of :class:`AugmentationCfg`; with every augmentation switched off
the training transform is the evaluation transform.

Input is a clip of uint8 RGB frames, ``(T, H, W, 3)`` (numpy or torch), as stored in
the frame cache. Output is float ``(T, 3, S, S)``. Random augmentation parameters are
drawn once per call and applied to every frame of the clip, so a clip stays a
temporally coherent crop of the same region (torchvision v2 treats leading dims as
a batch of one image).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

from .errors import DataError

logger = logging.getLogger(__name__)

OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass
class PreprocessCfg:
    """Deterministic part of preprocessing; lives in the model config."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_DATASET_MEAN
    std: tuple[float, float, float] = OPENAI_DATASET_STD
    interpolation: str = "bicubic"


@dataclass
class AugmentationCfg:
    """Training-only augmentation; a run config chooses it (``create_model_and_transforms(augmentation=...)``).

    ``random_resized_crop_scale`` is the (min, max) fraction of the frame area kept;
    ``None`` disables the random crop (then the deterministic resize + centre crop is used).
    ``color_jitter`` is the brightness/contrast/saturation strength (0 disables it);
    ``hue`` is separate because surgical colour carries meaning (blood vs tissue).
    """

    random_resized_crop_scale: tuple[float, float] | None = (0.7, 1.0)
    random_resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_prob: float = 0.5
    color_jitter: float = 0.2
    hue: float = 0.0

    @classmethod
    def none(cls) -> AugmentationCfg:
        """No augmentation at all: the training transform equals the evaluation transform."""
        return cls(random_resized_crop_scale=None, hflip_prob=0.0, color_jitter=0.0, hue=0.0)


def augmentation_from(value: AugmentationCfg | dict[str, Any] | None) -> AugmentationCfg:
    """Accept a dataclass, a plain mapping (from a YAML run config) or ``None`` (defaults)."""
    if value is None:
        return AugmentationCfg()
    if isinstance(value, AugmentationCfg):
        return value
    if isinstance(value, dict):
        known = set(AugmentationCfg.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise DataError(f"augmentation config has unknown key(s) {unknown}; known keys: {sorted(known)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        return AugmentationCfg(**fixed)
    raise DataError(f"augmentation must be an AugmentationCfg, a mapping or None, got {type(value).__name__}")


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Check a uint8 RGB clip ``(T, H, W, 3)`` (or one frame ``(H, W, 3)``) and return float ``(T, 3, H, W)`` in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not isinstance(tensor, torch.Tensor):
        raise DataError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if tensor.dtype != torch.uint8:
        raise DataError(
            f"frames must be uint8 RGB (T, H, W, 3) as stored in the frame cache, got dtype {tensor.dtype}; "
            "convert with (x * 255).round().astype(np.uint8) if you have floats in [0, 1]"
        )
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise DataError(f"frames must have shape (T, H, W, 3) with RGB last, got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise DataError("frames is an empty clip (T=0)")
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


class FrameTransform:
    """Callable mapping uint8 frames ``(T, H, W, 3)`` to normalised float ``(T, 3, S, S)``.

    A single frame ``(H, W, 3)`` gives ``(1, 3, S, S)``. Picklable, so it can run in
    DataLoader workers.
    """

    def __init__(self, preprocess: PreprocessCfg, augmentation: AugmentationCfg | None = None):
        if preprocess.interpolation not in _INTERPOLATIONS:
            raise DataError(
                f"unknown interpolation {preprocess.interpolation!r}; choose one of {sorted(_INTERPOLATIONS)}"
            )
        self.preprocess = preprocess
        self.augmentation = augmentation
        size = preprocess.image_size
        interpolation = _INTERPOLATIONS[preprocess.interpolation]
        steps: list[Any] = []
        aug = augmentation or AugmentationCfg.none()
        if aug.random_resized_crop_scale is not None:
            steps.append(
                v2.RandomResizedCrop(
                    size,
                    scale=tuple(aug.random_resized_crop_scale),
                    ratio=tuple(aug.random_resized_crop_ratio),
                    interpolation=interpolation,
                    antialias=True,
                )
            )
        else:
            # Resize the short side then centre-crop: keeps the aspect ratio, as open_clip's eval transform.
            steps += [v2.Resize(size, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
        if aug.hflip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(p=aug.hflip_prob))
        if aug.color_jitter > 0 or aug.hue > 0:
            steps.append(
                v2.ColorJitter(
                    brightness=aug.color_jitter,
                    contrast=aug.color_jitter,
                    saturation=aug.color_jitter,
                    hue=aug.hue,
                )
            )
        steps.append(v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)))
        self._pipeline = v2.Compose(steps)

    @property
    def is_augmenting(self) -> bool:
        aug = self.augmentation
        return aug is not None and aug != AugmentationCfg.none()

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self._pipeline(frames_to_tensor(frames))

    def __repr__(self) -> str:
        return f"FrameTransform({self._pipeline!r})"


def build_transforms(
    preprocess: PreprocessCfg, augmentation: AugmentationCfg | dict[str, Any] | None = None
) -> tuple[FrameTransform, FrameTransform]:
    """Return ``(preprocess_train, preprocess_eval)`` sharing size and normalisation."""
    train = FrameTransform(preprocess, augmentation_from(augmentation))
    evaluation = FrameTransform(preprocess, None)
    return train, evaluation
