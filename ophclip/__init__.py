"""OphCLIP: hierarchical, retrieval-augmented vision-language pretraining on ophthalmic surgery video.

The public model API is imported lazily, so ``import ophclip`` (and the CLI) stays fast
until a model is actually needed::

    import ophclip
    model, preprocess_train, preprocess_eval = ophclip.create_model_and_transforms("OphCLIP-tiny-MiniLM")
"""

from __future__ import annotations

from ophbase.lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "list_models": "factory",
    "add_model_config": "factory",
    "get_model_config": "factory",
    "create_model": "factory",
    "create_model_and_transforms": "factory",
    "get_tokenizer": "factory",
    "OphCLIP": "model",
    "OphCLIPConfig": "model",
    "HFTextCfg": "model",
    "TemporalCfg": "model",
    "PreprocessCfg": "transforms",
    "AugmentationCfg": "transforms",
    "FrameTransform": "transforms",
    "build_transforms": "transforms",
    "LossCfg": "loss",
    "ClipLoss": "loss",
    "HierarchicalLoss": "loss",
    "gather_features": "loss",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_EXPORTS)
