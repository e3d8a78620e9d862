"""Self-supervised video pretraining of a vision tower (OVFM's SVT/DINO recipe) on the frame cache.

from ophclip.ssl import SSLConfig, SSLTrainer, load_vision_init
summary = SSLTrainer(cfg).fit()                 # writes <output_dir>/vision/
load_vision_init(model, "runs/ssl/vision")      # warm-start an OphCLIP model's vision tower
"""

import importlib
from typing import Any

# Names load on first use (PEP 562): ophclip.train.config reads the data-only sections of
# .config, and an eager import of .trainer here would import ophclip.train mid-way through.
_WHERE = {
    "AuxiliarySSLLoss": "auxiliary",
    "SilentPoolSSL": "auxiliary",
    "ClipEncoder": "head",
    "DINOHead": "head",
    "MultiCropVideoViews": "views",
    "SSLCollapseError": "trainer",
    "SSLConfig": "config",
    "SSLLoss": "loss",
    "SSLTrainer": "trainer",
    "collate_views": "views",
    "load_vision_init": "export",
    "run_ssl": "trainer",
    "save_vision": "export",
    "ssl_recipe": "export",
    "ssl_video_ids": "views",
    "teacher_temperature": "loss",
    "validate": "config",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


__all__ = sorted(_WHERE)
