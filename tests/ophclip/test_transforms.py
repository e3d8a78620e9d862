"""Frame transforms: eval against a hand-written resize/crop/normalise, train == eval without augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ophclip.errors import DataError
from ophclip.transforms import (
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
    AugmentationCfg,
    PreprocessCfg,
    augmentation_from,
    build_transforms,
)

SIZE = 32


def clip(t=3, h=40, w=56, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def reference_eval(frames: np.ndarray, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bicubic, antialiased), centre-crop, normalise — written out by hand."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).double() / 255.0
    h, w = x.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(OPENAI_DATASET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return ((x - mean) / std).float()


@pytest.mark.parametrize("shape", [(2, 40, 56), (2, 56, 40), (1, 32, 32), (2, 64, 64)])
def test_eval_transform_matches_hand_written_reference(shape):
    frames = clip(*shape)
    _, evaluate = build_transforms(PreprocessCfg(image_size=SIZE))
    out = evaluate(frames)
    assert out.shape == (shape[0], 3, SIZE, SIZE) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_eval(frames, SIZE), atol=2e-5, rtol=0)


def test_train_without_augmentation_equals_eval_and_accepts_tensors():
    frames = clip()
    train, evaluate = build_transforms(PreprocessCfg(image_size=SIZE), AugmentationCfg.none())
    assert not train.is_augmenting
    torch.testing.assert_close(train(frames), evaluate(frames), atol=0, rtol=0)
    torch.testing.assert_close(evaluate(torch.from_numpy(frames)), evaluate(frames), atol=0, rtol=0)
    single = evaluate(frames[0])
    torch.testing.assert_close(single, evaluate(frames)[:1], atol=0, rtol=0)


def test_augmentation_is_random_but_shared_by_all_frames_of_a_clip():
    frame = clip(t=1, seed=1)
    frames = np.repeat(frame, 4, axis=0)
    train, evaluate = build_transforms(PreprocessCfg(image_size=SIZE), AugmentationCfg(hue=0.05))
    assert train.is_augmenting
    torch.manual_seed(0)
    outs = [train(frames) for _ in range(3)]
    for out in outs:
        assert out.shape == (4, 3, SIZE, SIZE)
        for t in range(1, 4):  # one crop/flip/jitter per clip, not per frame
            torch.testing.assert_close(out[t], out[0], atol=0, rtol=0)
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[0], evaluate(frames))


def test_flip_only_is_the_mirrored_eval_output():
    frames = clip(seed=2)
    train, evaluate = build_transforms(
        PreprocessCfg(image_size=SIZE),
        {"random_resized_crop_scale": None, "hflip_prob": 1.0, "color_jitter": 0.0},
    )
    torch.testing.assert_close(train(frames), evaluate(frames).flip(-1), atol=0, rtol=0)


def test_same_normalisation_train_and_eval():
    cfg = PreprocessCfg(image_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    train, evaluate = build_transforms(
        cfg,
        AugmentationCfg(
            random_resized_crop_scale=(1.0, 1.0),
            random_resized_crop_ratio=(1.0, 1.0),
            hflip_prob=0.0,
            color_jitter=0.0,
        ),
    )
    grey = np.full((1, SIZE, SIZE, 3), 128, dtype=np.uint8)  # a uniform frame survives any crop unchanged
    expected = (128 / 255 - 0.5) / 0.25
    for transform in (train, evaluate):
        torch.testing.assert_close(
            transform(grey), torch.full((1, 3, SIZE, SIZE), expected), atol=1e-5, rtol=0
        )


def test_transforms_pickle_for_dataloader_workers():
    frames = clip(seed=3)
    _, evaluate = build_transforms(PreprocessCfg(image_size=SIZE))
    clone = pickle.loads(pickle.dumps(evaluate))
    torch.testing.assert_close(clone(frames), evaluate(frames), atol=0, rtol=0)


def test_bad_frames_raise_clear_errors():
    _, evaluate = build_transforms(PreprocessCfg(image_size=SIZE))
    with pytest.raises(DataError, match="uint8"):
        evaluate(clip().astype(np.float32))
    with pytest.raises(DataError, match=r"\(T, H, W, 3\)"):
        evaluate(np.zeros((2, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="empty clip"):
        evaluate(np.zeros((0, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="unknown key"):
        augmentation_from({"flip": 0.5})
    with pytest.raises(DataError, match="interpolation"):
        build_transforms(PreprocessCfg(image_size=SIZE, interpolation="lanczos9"))
