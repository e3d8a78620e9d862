"""The library's exceptions: the shared family of :mod:`ophbase.errors`, re-exported.

``except ophclip.errors.OphclipError`` also catches the pipeline's and the memory bank's
errors, since they derive from the same root. The CLI prints them as one line
(``--debug`` shows the traceback).
"""

from ophbase.errors import ConfigError, DataError, ModelError, OphclipError

__all__ = ["ConfigError", "DataError", "ModelError", "OphclipError"]
