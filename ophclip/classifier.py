"""Zero-shot classifier weights from prompts (open_clip's ``zero_shot_classifier.py`` recipe).

For each class, encode every sentence x template, L2-normalise, average, and normalise
again. Evaluation (:mod:`ophclip.eval.zero_shot`), streaming (:mod:`ophclip.stream`) and
distillation use the same weights, so a prompt file means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ophbase.device import module_device

from .errors import ConfigError
from .prompts import PromptSet

__all__ = ["build_negative_classifier", "build_zero_shot_classifier", "encode_texts", "logit_scale_of"]


def logit_scale_of(model) -> float:
    """The model's similarity multiplier: ``get_logit_scale()`` when the model has it
    (OphCLIP: exp of the stored log-scale, clamped), else ``exp(model.logit_scale)``
    as in open_clip, else 10 (temperature 0.1)."""
    if hasattr(model, "get_logit_scale"):
        return float(torch.as_tensor(model.get_logit_scale()).detach().float().cpu())
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        return 10.0
    return float(torch.as_tensor(scale).detach().float().exp().cpu())


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings on the CPU, encoded in batches."""
    device = module_device(model)
    out = []
    for s in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[s : s + batch_size]))
        tokens = {k: v.to(device) for k, v in tokens.items()} if isinstance(tokens, dict) else tokens.to(device)
        emb = model.encode_text(tokens, normalize=True)
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def build_zero_shot_classifier(
    model, tokenizer, class_texts: PromptSet | Sequence[Sequence[str]], batch_size: int = 256
) -> torch.Tensor:
    """(D, K) classifier: per class, the normalised mean of its normalised text embeddings.

    ``class_texts`` is a :class:`PromptSet` (sentences x templates per class) or a
    list with one list of finished sentences per class.
    """
    if isinstance(class_texts, PromptSet):
        class_texts = [class_texts.texts(c) for c in class_texts.class_names]
    flat = [t for texts in class_texts for t in texts]
    if any(len(texts) == 0 for texts in class_texts):
        raise ConfigError("every class needs at least one text (sentence x template)")
    emb = encode_texts(model, tokenizer, flat, batch_size)
    weights, s = [], 0
    for texts in class_texts:
        mean = emb[s : s + len(texts)].mean(dim=0)
        weights.append(mean / mean.norm().clamp_min(1e-12))
        s += len(texts)
    return torch.stack(weights, dim=1)


def build_negative_classifier(model, tokenizer, prompts: PromptSet, batch_size: int = 256) -> torch.Tensor:
    """(D, K) embeddings of each class's "not present" prompts (tools)."""
    return build_zero_shot_classifier(model, tokenizer, [prompts.negative_texts(c) for c in prompts.class_names], batch_size)
