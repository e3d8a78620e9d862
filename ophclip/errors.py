"""One exception family for the library.

Messages name the file, row or key, say what was expected, and say what to do.
The CLI prints them as one line (``--debug`` shows the traceback).
"""


class OphclipError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(OphclipError, ValueError):
    """A config file or override is missing, malformed, or has an unknown key or wrong type."""


class DataError(OphclipError, ValueError):
    """An input file (video, manifest, annotation, captions) is missing or malformed."""


class ModelError(OphclipError, ValueError):
    """A model name, checkpoint or weight file is unknown or incompatible."""
