"""A test double with the OphCLIP model API whose right answers are known.

Texts embed to fixed random unit vectors (one per distinct string). A frame whose
pixels all equal ``10 * c`` embeds to the *classifier direction* of class ``c``
(set with :meth:`OracleModel.set_classes`), so zero-shot prediction must return ``c``.
It is used beside the real OphCLIP integration tests, never instead of them.
"""

from __future__ import annotations

import numpy as np
import torch


class OracleTokenizer:
    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, texts):
        return torch.tensor([self.vocab.setdefault(t, len(self.vocab)) for t in texts])


class OracleModel(torch.nn.Module):
    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(4096, dim, generator=torch.Generator().manual_seed(seed)),
                                        requires_grad=False)
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32), requires_grad=False)
        self.class_dirs = torch.zeros(0, dim)
        self.image_batches: list[int] = []

    def set_classes(self, directions: torch.Tensor) -> None:
        self.class_dirs = directions

    def encode_text(self, tokens, normalize=False):
        x = self.table[tokens]
        return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    def encode_image(self, x, normalize=False):
        self.image_batches.append(len(x))
        c = (x.mean(dim=(1, 2, 3)) / 10).round().long().clamp(0, len(self.class_dirs) - 1)
        out = self.class_dirs[c]
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_video(self, x, normalize=False):
        b, t = x.shape[:2]
        frames = self.encode_image(x.flatten(0, 1), normalize=True).view(b, t, -1).mean(1)
        return torch.nn.functional.normalize(frames, dim=-1) if normalize else frames


def oracle_preprocess(frames) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) keeping pixel values (the double reads them)."""
    return torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float()
