"""Watching a self-supervised run: collapse detection and a kNN probe of the teacher's features."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from data_pipeline.frame_cache import FrameCache

from ..errors import ConfigError, DataError, OphclipError

logger = logging.getLogger(__name__)


class SSLCollapseError(OphclipError):
    """The representation collapsed: every clip maps to (nearly) the same feature."""


def spread_ratio(x: torch.Tensor) -> float:
    """Batch std of L2-normalised rows times sqrt(D): ~1 for spread features, 0 for one point."""
    if x.shape[0] < 2:
        return float("nan")
    z = F.normalize(x.float(), dim=-1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def knn_accuracy(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, k: int
) -> float:
    """Cosine k-nearest-neighbour majority vote (ties -> the smallest label)."""
    sims = F.normalize(test_x, dim=-1) @ F.normalize(train_x, dim=-1).T
    nn_idx = sims.topk(min(k, train_x.shape[0]), dim=1).indices.numpy()
    classes = np.unique(train_y)
    votes = (train_y[nn_idx][:, :, None] == classes[None, None, :]).sum(1)
    return float((classes[votes.argmax(1)] == test_y).mean())


class KNNProbe:
    """Frames of a labelled probe set, split by video (alternate videos train / test), for kNN accuracy."""

    def __init__(self, labels_path: str | Path, root: str | Path, preprocess_eval, max_frames: int):
        path = Path(labels_path)
        if not path.is_file():
            raise ConfigError(
                f"monitor.probe_labels = {str(path)!r} does not exist; give a table of video_id, time_s, label"
            )
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        missing = {"video_id", "time_s", "label"} - set(table.columns)
        if missing:
            raise DataError(
                f"{path}: probe labels need columns video_id, time_s, label; missing {sorted(missing)}"
            )
        cache = FrameCache(root)
        table = table.assign(video_id=table["video_id"].astype(str))
        known = table["video_id"].isin(set(cache.index.index))
        if not known.all():
            logger.warning(
                "%s: %d probe row(s) name videos outside the frame cache of %s; skipped",
                path,
                int((~known).sum()),
                root,
            )
        table = table[known].sort_values(["video_id", "time_s"]).reset_index(drop=True)
        if len(table) > max_frames:
            table = table.iloc[np.linspace(0, len(table) - 1, max_frames).round().astype(int)].reset_index(
                drop=True
            )
        videos = sorted(table["video_id"].unique())
        if len(videos) < 2:
            raise DataError(
                f"{path}: the kNN probe needs labelled frames of at least 2 cached videos, found {len(videos)}"
            )
        frames = [
            cache.get(v, [int(np.floor(t * cache.fps(v)))])[0]
            for v, t in zip(table["video_id"], table["time_s"], strict=True)
        ]
        self.images = preprocess_eval(np.stack(frames))
        self.labels = table["label"].astype(str).to_numpy()
        test_videos = set(videos[1::2])
        self.is_test = np.array(table["video_id"].isin(test_videos).to_numpy(), dtype=bool)  # writable copy

    @torch.no_grad()
    def accuracy(self, tower: nn.Module, k: int, device: torch.device, batch: int = 256) -> float:
        was = tower.training
        tower.eval()
        feats = torch.cat(
            [
                tower(self.images[i : i + batch].to(device)).float().cpu()
                for i in range(0, len(self.images), batch)
            ]
        )
        tower.train(was)
        te = torch.from_numpy(self.is_test.copy())
        return knn_accuracy(feats[~te], self.labels[~self.is_test], feats[te], self.labels[self.is_test], k)
