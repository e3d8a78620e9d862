"""Errors of the data pipeline.

``data_pipeline`` does not import ``ophclip`` (DESIGN.md), so it has its own base;
the CLI catches both families and prints one clean line.
"""


class PipelineError(Exception):
    """Base of every error the data pipeline raises on purpose."""


class InputError(PipelineError, ValueError):
    """A video, caption or list file is missing, corrupt or malformed. The message names the file."""


class StageError(PipelineError, RuntimeError):
    """A pipeline stage could not run (missing model, bad backend settings)."""
