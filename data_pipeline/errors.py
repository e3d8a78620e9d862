"""Errors of the data pipeline, in the shared family of :mod:`ophbase.errors`."""

from ophbase.errors import DataError, OphclipError


class PipelineError(OphclipError):
    """Base of every error the data pipeline raises on purpose."""


class InputError(PipelineError, DataError):
    """A video, caption or list file is missing, corrupt or malformed. The message names the file."""


class StageError(PipelineError, RuntimeError):
    """A pipeline stage could not run (missing model, bad backend settings)."""
