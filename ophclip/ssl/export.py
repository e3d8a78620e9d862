"""The SSL result on disk, and loading it into an OphCLIP model's vision tower.

``<output_dir>/vision/`` holds ``vision.safetensors`` (the teacher's vision-tower state
dict, the tower DINO evaluates) and ``vision_config.json`` (registry model name, the
tower's architecture and preprocessing, training info). :func:`load_vision_init` puts
those weights, or the vision tower of an OphCLIP ``save_pretrained`` folder, into
``model.visual`` strictly: a tower of another shape is an error that names the keys.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ophbase.io import atomic_path, atomic_write_text, read_json

from ..errors import ModelError

logger = logging.getLogger(__name__)

VISION_WEIGHTS = "vision.safetensors"
VISION_CONFIG = "vision_config.json"
OPHCLIP_WEIGHTS = "model.safetensors"  # ophclip.model.WEIGHTS_FILENAME
VISUAL_PREFIX = "visual."


def save_vision(
    folder: str | Path, tower: nn.Module, model_config: Any, training_info: dict[str, Any] | None = None
) -> Path:
    """Write the tower's weights and its architecture (an :class:`ophclip.model.OphCLIPConfig`) atomically."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in tower.state_dict().items()}
    with atomic_path(folder / VISION_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "model_name": str(model_config.model_name)})
    record = {
        "model_name": model_config.model_name,
        "embed_dim": model_config.embed_dim,
        "vision_cfg": dataclasses.asdict(model_config.vision_cfg),
        "preprocess_cfg": dataclasses.asdict(model_config.preprocess_cfg),
        "quick_gelu": model_config.quick_gelu,
        "training_info": training_info or {},
        "format_version": 1,
    }
    atomic_write_text(folder / VISION_CONFIG, json.dumps(record, indent=2, default=str))
    logger.info("saved the SSL vision tower to %s", folder)
    return folder


def ssl_recipe(folder: str | Path) -> tuple[str, str]:
    """(registry model name, ``"<method> <steps> steps"``) of a ``vision/`` folder, from the
    record :func:`save_vision` wrote; benchmarks label their rows with it."""
    record = read_json(Path(folder) / VISION_CONFIG, ModelError, "give the vision/ folder an `ophclip ssl` run wrote")
    ssl = record.get("training_info", {}).get("ssl", {})
    return record["model_name"], f"{ssl.get('method', 'ssl')} {ssl.get('steps', '?')} steps"


def read_vision_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Vision-tower state dict from an SSL ``vision/`` folder, an OphCLIP save_pretrained folder, or a .safetensors file."""
    path = Path(path)
    if path.is_dir():
        if (path / VISION_WEIGHTS).is_file():
            file, prefixed = path / VISION_WEIGHTS, False
        elif (path / OPHCLIP_WEIGHTS).is_file():
            file, prefixed = path / OPHCLIP_WEIGHTS, True
        else:
            raise ModelError(
                f"{path} holds neither {VISION_WEIGHTS} (written by `ophclip ssl`) nor {OPHCLIP_WEIGHTS} "
                "(written by save_pretrained); point model.init_vision_from at one of those folders"
            )
    elif path.is_file():
        file, prefixed = path, None
    else:
        raise ModelError(f"vision init {path} not found; give the vision/ folder an `ophclip ssl` run wrote")
    try:
        state = load_file(str(file), device="cpu")
    except Exception as e:  # safetensors raises its own types for a corrupt file
        raise ModelError(f"could not read vision weights {file}: {e}") from None
    if prefixed is None:
        prefixed = any(k.startswith(VISUAL_PREFIX) for k in state)
    if prefixed:
        state = {k[len(VISUAL_PREFIX) :]: v for k, v in state.items() if k.startswith(VISUAL_PREFIX)}
        if not state:
            raise ModelError(f"{file} has no '{VISUAL_PREFIX}*' weights: it holds no vision tower")
    return state


def load_vision_init(model: nn.Module, path: str | Path) -> nn.Module:
    """Initialise ``model.visual`` (or ``model`` itself if it has no ``.visual``) from ``path``, strictly.

    For the trainer: ``if cfg.model.init_vision_from: load_vision_init(model, cfg.model.init_vision_from)``.
    """
    tower = getattr(model, "visual", model)
    state = read_vision_state(path)
    own = tower.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {keys[:6]}{' ...' if len(keys) > 6 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
            if keys
        )
        raise ModelError(
            f"vision weights {path} do not fit this model's vision tower ({detail}); "
            "pretrain SSL with the same model.name as the model you initialise"
        )
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(own[key].device, own[key].dtype))
    logger.info("initialised the vision tower from %s (%d tensors)", path, len(state))
    return model
