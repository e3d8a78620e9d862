"""Self-supervised video pretraining of a vision tower (OVFM's SVT/DINO recipe) on the frame cache.

from ophclip.ssl import SSLConfig, SSLTrainer, load_vision_init
summary = SSLTrainer(cfg).fit()                 # writes <output_dir>/vision/
load_vision_init(model, "runs/ssl/vision")      # warm-start an OphCLIP model's vision tower
"""

from .auxiliary import AuxiliarySSLLoss
from .config import SSLConfig, validate
from .export import load_vision_init, save_vision
from .head import ClipEncoder, DINOHead
from .loss import SSLLoss, teacher_temperature
from .trainer import SSLCollapseError, SSLTrainer, run_ssl
from .views import MultiCropVideoViews, collate_views, ssl_video_ids

__all__ = [
    "AuxiliarySSLLoss",
    "ClipEncoder",
    "DINOHead",
    "MultiCropVideoViews",
    "SSLCollapseError",
    "SSLConfig",
    "SSLLoss",
    "SSLTrainer",
    "collate_views",
    "load_vision_init",
    "run_ssl",
    "save_vision",
    "ssl_video_ids",
    "teacher_temperature",
    "validate",
]
