"""The OphCLIP dual encoder: an open_clip vision tower, a text tower, and temporal pooling.

Architectures are data: an :class:`OphCLIPConfig` (defined in ``ophclip.model_config``,
importable from here) is read from a JSON file in ``ophclip/model_configs/`` (see
``ophclip.factory``). Its parts are typed dataclasses:

* ``vision_cfg`` is open_clip's own ``CLIPVisionCfg`` (ViT or ModifiedResNet), built
  with ``open_clip.model._build_vision_tower`` so the tower is exactly open_clip's;
* ``text_cfg`` is either open_clip's ``CLIPTextCfg`` (``"type": "open_clip"``) or an
  :class:`HFTextCfg` (``"type": "hf"``): a Hugging Face encoder, mean-pooled over
  non-padding tokens, with an optional linear projection to ``embed_dim``;
* ``temporal_cfg`` (:class:`TemporalCfg`) pools per-frame embeddings into one clip or
  video embedding: a (masked) mean, or a small temporal transformer initialised so it
  starts out as the mean.

Embeddings are returned unnormalised unless ``normalize=True`` is passed, as in open_clip.
Per-frame embeddings are pooled before normalisation.

``logit_scale`` holds log(1/temperature), as open_clip's ``model.logit_scale``: a
learnable parameter clamped to ``max_logit_scale`` (100) or, with
``logit_scale_learnable: false``, a fixed buffer (the peers use tau = 0.1). Use
:meth:`OphCLIP.get_logit_scale` for the (clamped) multiplier and call
:meth:`OphCLIP.clamp_logit_scale_` after each optimizer step, as open_clip's trainer does.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.model import _build_text_tower, _build_vision_tower
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel

from ophbase.io import atomic_path, atomic_write_text, read_json

from .errors import ModelError
from .model_card import render_model_card
from .model_config import EMBEDDED_HF_MODELS, HFTextCfg, OphCLIPConfig, TemporalCfg
from .pretrained import minilm_dir
from .tokenizer import HFTokenizer

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "ophclip_config.json"
WEIGHTS_FILENAME = "model.safetensors"
TEXT_TOWER_DIRNAME = "text_tower"
CARD_FILENAME = "README.md"


def resolve_hf_source(cfg: HFTextCfg) -> str:
    """Local folder (or hub id, as a last resort) to load the text tower and tokenizer from."""
    if cfg.hf_model_path:
        path = Path(cfg.hf_model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(
                f"text_cfg.hf_model_path {path} is not a Hugging Face model folder (no config.json); "
                "point it at a folder made by `huggingface-cli download` or save_pretrained"
            )
        return str(path)
    if EMBEDDED_HF_MODELS.get(cfg.hf_model_name) == "minilm":
        return str(minilm_dir())
    return cfg.hf_model_name


def _hub_hint(name: str) -> str:
    return (
        f"could not load Hugging Face model {name!r} (no hub access, or HF_HUB_OFFLINE=1). "
        f"On a machine with hub access run `huggingface-cli download {name} --local-dir <folder>`, copy the "
        "folder here and pass text_model_path=<folder> (or set text_cfg.hf_model_path in the model config)"
    )


class HFTextTower(nn.Module):
    """Hugging Face encoder + pooling over tokens + optional linear projection."""

    def __init__(self, cfg: HFTextCfg, embed_dim: int, hf_config: Any | None = None):
        """Load pretrained weights from ``resolve_hf_source(cfg)``, or build from ``hf_config`` (weights come later)."""
        super().__init__()
        self.cfg = cfg
        self.context_length = cfg.context_length
        if hf_config is not None:
            self.transformer = AutoModel.from_config(hf_config)
        else:
            source = resolve_hf_source(cfg)
            try:
                self.transformer = AutoModel.from_pretrained(source)
            except OSError as e:
                raise ModelError(f"{_hub_hint(cfg.hf_model_name)} ({e})") from None
        # The BERT pooler is unused by mean/CLS pooling; drop it so DDP sees no parameters without gradients.
        if getattr(self.transformer, "pooler", None) is not None:
            self.transformer.pooler = None
        hidden = self.transformer.config.hidden_size
        if cfg.proj_type == "linear":
            self.proj = nn.Linear(hidden, embed_dim, bias=False)
            nn.init.normal_(self.proj.weight, std=hidden**-0.5)
        else:
            if hidden != embed_dim:
                raise ModelError(
                    f"text_cfg.proj_type 'none' needs embed_dim == hidden size {hidden}, got {embed_dim}"
                )
            self.proj = nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.transformer.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            self.transformer.gradient_checkpointing_disable()

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(tokens, dict) or "input_ids" not in tokens:
            raise ModelError(
                "a Hugging Face text tower takes the dict made by ophclip.get_tokenizer(name)(texts)"
            )
        device = (
            self.proj.weight.device
            if isinstance(self.proj, nn.Linear)
            else next(self.transformer.parameters()).device
        )
        inputs = {
            k: v.to(device)
            for k, v in tokens.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        hidden = self.transformer(**inputs).last_hidden_state
        if self.cfg.pooler == "cls":
            pooled = hidden[:, 0]
        else:
            mask = inputs.get("attention_mask")
            if mask is None:
                pooled = hidden.mean(dim=1)
            else:
                mask = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.proj(pooled)


class TemporalTransformer(nn.Module):
    """A few pre-norm transformer layers over time, then a masked mean.

    Output projections start at zero and positions at zero, so at initialisation the
    module is exactly mean pooling; training moves it away only if that helps.
    """

    def __init__(self, width: int, cfg: TemporalCfg):
        super().__init__()
        self.max_frames = cfg.max_frames
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.max_frames, width))
        layer = nn.TransformerEncoderLayer(
            width,
            cfg.heads,
            int(width * cfg.mlp_ratio),
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        for block in self.encoder.layers:
            nn.init.zeros_(block.self_attn.out_proj.weight)
            nn.init.zeros_(block.self_attn.out_proj.bias)
            nn.init.zeros_(block.linear2.weight)
            nn.init.zeros_(block.linear2.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        steps = frames.shape[1]
        if steps > self.max_frames:
            raise ModelError(f"clip has {steps} frames but temporal_cfg.max_frames is {self.max_frames}")
        hidden = self.encoder(
            frames + self.positional_embedding[:steps], src_key_padding_mask=None if mask is None else ~mask
        )
        return masked_mean(hidden, mask)


def masked_mean(frames: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``(B, T, D)``, counting only frames where ``mask`` (B, T) is True."""
    if mask is None:
        return frames.mean(dim=1)
    weights = mask.to(frames.dtype).unsqueeze(-1)
    return (frames * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class OphCLIP(nn.Module):
    """Dual encoder for surgical video: ``encode_image``, ``encode_video``, ``encode_text``."""

    def __init__(self, config: OphCLIPConfig, *, hf_config: Any | None = None):
        """Build every tower from ``config``.

        A Hugging Face text tower loads its pretrained weights, unless ``hf_config`` (a
        transformers config) is given: then it is built with random weights, to be
        overwritten by :meth:`load_weights`.
        """
        super().__init__()
        config.validate()
        self.config = config
        self.embed_dim = config.embed_dim
        self.image_size = config.vision_cfg.image_size
        self.visual = _build_vision_tower(config.embed_dim, config.vision_cfg, config.quick_gelu)
        if isinstance(config.text_cfg, HFTextCfg):
            self.text = HFTextTower(config.text_cfg, config.embed_dim, hf_config=hf_config)
        else:
            self.text = _build_text_tower(config.embed_dim, config.text_cfg, config.quick_gelu)
        self.temporal = (
            TemporalTransformer(config.embed_dim, config.temporal_cfg)
            if config.temporal_cfg.pool == "transformer"
            else None
        )

        init = torch.tensor(math.log(1.0 / config.init_temperature))
        if config.logit_scale_learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        if config.text_frozen:
            self.text.requires_grad_(False)
            self.text.eval()
        # Set by lock_image_tower(freeze_bn_stats=True): a training choice, not architecture, so not in config.
        self.vision_bn_stats_frozen = False

    # ---- training helpers -------------------------------------------------
    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the vision tower, as open_clip's ``--lock-image``, except its last ``unlocked_groups`` layer groups.

        The groups are the tower's own (open_clip's ``visual.lock``: timm's ``group_matcher`` for a
        timm trunk, whose projection head always stays trainable; residual stages for ModifiedResNet;
        transformer blocks for a ViT). ``freeze_bn_stats``: every BatchNorm of the vision tower
        normalises with its running statistics during training too and never updates them, so
        pretrained statistics are kept and batches drawn from one video cannot skew them.
        """
        if unlocked_groups < 0:
            raise ModelError(f"unlocked_groups = {unlocked_groups}; it must be >= 0")
        if not hasattr(self.visual, "lock"):
            raise ModelError(f"the vision tower of {self.config.model_name} cannot be locked (no lock())")
        # open_clip's own freeze_bn_stats swaps in FrozenBatchNorm2d, which changes the state-dict keys
        # (a saved model would no longer load into a fresh one); eval-mode BatchNorm keeps them.
        self.visual.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=False)
        if freeze_bn_stats:
            self.freeze_vision_bn_stats()

    def freeze_vision_bn_stats(self) -> None:
        """BatchNorm layers of the vision tower normalise with their running statistics, also in training."""
        self.vision_bn_stats_frozen = True
        self.train(self.training)

    def vision_batch_norms(self) -> list[nn.Module]:
        return [m for m in self.visual.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


    @property
    def text_tower_is_frozen(self) -> bool:
        """True when encode_text has no trainable parameter: its outputs can be cached per sentence."""
        return not any(p.requires_grad for p in self.text.parameters())

    def train(self, mode: bool = True) -> OphCLIP:
        super().train(mode)
        if self.config.text_frozen:
            self.text.eval()  # frozen tower: no dropout, so cached embeddings equal fresh ones
        if self.vision_bn_stats_frozen:
            for bn in self.vision_batch_norms():
                bn.eval()  # running statistics normalise, and are not updated
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute tower activations in backward (memory for compute). open_clip's ResNet ignores it."""
        self.visual.set_grad_checkpointing(enable)
        if not self.text_tower_is_frozen:
            self.text.set_grad_checkpointing(enable)

    def get_logit_scale(self) -> torch.Tensor:
        """The multiplier of cosine similarities: exp(logit_scale), at most ``max_logit_scale``."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the stored log-scale to [0, log(max_logit_scale)]; call after each optimizer step."""
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))

    def no_weight_decay(self) -> set[str]:
        names = {"logit_scale"}
        for prefix, module in (("visual.", self.visual), ("text.", self.text)):
            if hasattr(module, "no_weight_decay"):
                names |= {prefix + n for n in module.no_weight_decay()}
        if self.temporal is not None:
            names.add("temporal.positional_embedding")
        return names

    def num_parameters(self) -> dict[str, int]:
        counts = {
            "vision": sum(p.numel() for p in self.visual.parameters()),
            "text": sum(p.numel() for p in self.text.parameters()),
            "temporal": sum(p.numel() for p in self.temporal.parameters())
            if self.temporal is not None
            else 0,
        }
        counts["total"] = sum(p.numel() for p in self.parameters()) + (
            0 if self.config.logit_scale_learnable else 1
        )
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    # ---- encoders --------------------------------------------------------
    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``(N, 3, S, S)`` preprocessed frames -> ``(N, D)`` per-frame embeddings."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ModelError(
                f"encode_image takes (N, 3, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def pool_frames(self, frame_features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, D)`` frame embeddings -> ``(B, D)`` by the configured temporal pooling."""
        if self.temporal is None:
            return masked_mean(frame_features, mask)
        return self.temporal(frame_features, mask)

    def encode_video(
        self, video: torch.Tensor, normalize: bool = False, mask: torch.Tensor | None = None,
        return_frames: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 3, S, S)`` -> ``(B, D)``. ``mask`` (B, T), True for real frames, lets videos of different length share a batch.

        ``return_frames``: also return the ``(B, T, D)`` per-frame embeddings the pooled one is made
        from (normalised like it), for losses that supervise single frames.
        """
        if video.ndim != 5 or video.shape[2] != 3:
            raise ModelError(
                f"encode_video takes (B, T, 3, {self.image_size}, {self.image_size}), got {tuple(video.shape)}"
            )
        batch, steps = video.shape[:2]
        if mask is not None and tuple(mask.shape) != (batch, steps):
            raise ModelError(f"encode_video mask must have shape {(batch, steps)}, got {tuple(mask.shape)}")
        frames = self.encode_image(video.flatten(0, 1)).view(batch, steps, -1)
        pooled = self.pool_frames(frames, None if mask is None else mask.to(frames.device, torch.bool))
        if normalize:
            pooled = F.normalize(pooled, dim=-1)
        if not return_frames:
            return pooled
        return pooled, (F.normalize(frames, dim=-1) if normalize else frames)

    def encode_text(
        self, tokens: torch.Tensor | dict[str, torch.Tensor], normalize: bool = False
    ) -> torch.Tensor:
        """Tokens from ``ophclip.get_tokenizer(name)`` -> ``(N, D)``."""
        if isinstance(self.text, HFTextTower):
            features = self.text(tokens)
        else:
            if not isinstance(tokens, torch.Tensor):
                raise ModelError(
                    "an open_clip text tower takes the token tensor made by ophclip.get_tokenizer(name)(texts)"
                )
            features = self.text(tokens.to(self.logit_scale.device))
        return F.normalize(features, dim=-1) if normalize else features

    def forward(
        self,
        video: torch.Tensor | None = None,
        text: torch.Tensor | dict[str, torch.Tensor] | None = None,
        video_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Normalised features and the logit scale, as open_clip's ``output_dict=True``.

        ``video`` may be frames ``(N, 3, S, S)`` (-> ``image_features``) or clips ``(B, T, 3, S, S)`` (-> ``video_features``).
        """
        out: dict[str, torch.Tensor] = {"logit_scale": self.get_logit_scale()}
        if video is not None:
            if video.ndim == 5:
                out["video_features"] = self.encode_video(video, normalize=True, mask=video_mask)
            else:
                out["image_features"] = self.encode_image(video, normalize=True)
        if text is not None:
            out["text_features"] = self.encode_text(text, normalize=True)
        return out

    # ---- persistence -----------------------------------------------------
    def save_pretrained(self, folder: str | Path, training_info: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors``, ``ophclip_config.json``, ``README.md`` (and ``text_tower/`` for HF text).

        Every file (and ``text_tower/`` as a whole) is written to a temporary name and moved into
        place with ``os.replace`` (:mod:`ophbase.io`). ``training_info`` (data, steps, metrics, ...)
        goes into the model card and the config file.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.text, HFTextTower):
            _save_hf_text_tower(self.text, folder / TEXT_TOWER_DIRNAME)
        config = self.config.to_dict()
        if config["text_cfg"]["type"] == "hf":
            config["text_cfg"]["hf_model_path"] = (
                None  # the tower now lives in text_tower/ beside the weights
            )
        record = {"config": config, "training_info": training_info or {}, "format_version": 1}
        atomic_write_text(folder / CONFIG_FILENAME, json.dumps(record, indent=2, default=str))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILENAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model_name": str(self.config.model_name)})
        atomic_write_text(
            folder / CARD_FILENAME, render_model_card(self.config, self.num_parameters(), training_info)
        )
        logger.info("saved %s to %s", self.config.model_name, folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> OphCLIP:
        """Load a folder written by :meth:`save_pretrained` (needs no hub: the text tower config ships inside)."""
        folder = Path(folder)
        return cls.from_config_and_weights(load_saved_config(folder), folder, map_location)

    @classmethod
    def from_config_and_weights(
        cls, config: OphCLIPConfig, folder: Path, map_location: str | torch.device = "cpu"
    ) -> OphCLIP:
        """Build ``config`` without downloading anything and load ``folder``'s weights into it."""
        weights = folder / WEIGHTS_FILENAME
        if not weights.is_file():
            raise ModelError(
                f"{folder} has no {WEIGHTS_FILENAME}; it was not written by OphCLIP.save_pretrained"
            )
        hf_config = None
        if isinstance(config.text_cfg, HFTextCfg):
            hf_config = AutoConfig.from_pretrained(str(folder / TEXT_TOWER_DIRNAME))
        model = cls(config, hf_config=hf_config)
        model.load_weights(weights)
        return model.to(map_location)

    def load_weights(self, path: str | Path) -> None:
        """Load a safetensors state dict strictly (into the parameters' current devices); a mismatch names the keys."""
        try:
            state = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise ModelError(f"could not read weights {path}: {e}") from None
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(
                f"weights {path} do not fit model {self.config.model_name}: missing {missing[:8]}"
                f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
            )


def load_saved_config(folder: Path) -> OphCLIPConfig:
    """Read the config of a saved model folder; its HF text tower is pointed at ``folder/text_tower``."""
    path = folder / CONFIG_FILENAME
    missing = f"{folder} is not a saved OphCLIP model; save one with model.save_pretrained"
    record = read_json(path, ModelError, missing)
    config = OphCLIPConfig.from_dict(record.get("config", {}), source=str(path))
    if isinstance(config.text_cfg, HFTextCfg):
        config.text_cfg.hf_model_path = str(folder / TEXT_TOWER_DIRNAME)
    return config


def _save_hf_text_tower(tower: HFTextTower, target: Path) -> None:
    """HF config + tokenizer files (no weights: those are in model.safetensors), swapped in as one folder."""
    source = tower.cfg.hf_model_path or resolve_hf_source(tower.cfg)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        tower.transformer.config.save_pretrained(tmp)
        HFTokenizer(source, tower.context_length).save_pretrained(tmp)
