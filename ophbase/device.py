"""One device resolver: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> ``torch.device``."""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0, key: str = "device") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; bare ``cuda`` means this rank's GPU.

    ``key`` names the config key in the error (``train.device``), so the user knows what to change.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} = {device!r} but CUDA is not available; use {key}=cpu")
        if device == "cuda":
            device = f"cuda:{local_rank}"
    elif device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{key} = 'mps' but this torch has no usable Apple GPU; use {key}=cpu")
    elif device != "cpu":
        raise ConfigError(f"{key} = {device!r}; expected auto, cpu, cuda, cuda:N or mps")
    return torch.device(device)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without any)."""
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")
