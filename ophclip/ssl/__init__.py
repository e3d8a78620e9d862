"""Self-supervised video pretraining of a vision tower (OVFM's SVT/DINO recipe): the pieces.

Views, head, loss, monitor and export live here; the run itself is the training engine
with the SSL objective (:mod:`ophclip.train.objectives.ssl`)::

    from ophclip.train.objectives.ssl import SSLTrainer
    summary = SSLTrainer(cfg).fit()                 # writes <output_dir>/vision/
    load_vision_init(model, "runs/ssl/vision")      # warm-start an OphCLIP model's vision tower
"""

import importlib
import warnings
from typing import Any

from ophbase.lazy import lazy_attributes

# Names load on first use (PEP 562), so that ``ophclip.train.config`` can read the
# data-only ``ssl.config`` without importing the views, head and open_clip.
_WHERE = {
    "AuxiliarySSLLoss": "auxiliary",
    "SilentPoolSSL": "auxiliary",
    "ClipEncoder": "head",
    "DINOHead": "head",
    "MultiCropVideoViews": "views",
    "SSLCollapseError": "monitor",
    "SSLConfig": "config",
    "SSLLoss": "loss",
    "collate_views": "views",
    "load_vision_init": "export",
    "save_vision": "export",
    "ssl_recipe": "export",
    "ssl_video_ids": "views",
    "teacher_temperature": "loss",
    "validate": "config",
}
# Deprecated: the run moved to the training engine; these names forward there.
_MOVED = {"SSLTrainer", "run_ssl"}


_lazy_getattr, __dir__ = lazy_attributes(__name__, _WHERE)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"ophclip.ssl.{name} moved to ophclip.train.objectives.ssl.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("ophclip.train.objectives.ssl"), name)
    return _lazy_getattr(name)


__all__ = sorted(_WHERE)
