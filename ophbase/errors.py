"""One exception family for every OphCLIP package.

``except OphclipError`` catches every error the library raises on purpose, whichever
package raised it. Messages name the file, row or key, say what was expected and say
what to do; the CLI prints them as one line (``--debug`` shows the traceback).

Per-package subclasses live beside their packages (``data_pipeline.errors``,
``retrieval.errors``) and derive from these.
"""


class OphclipError(Exception):
    """Base of every error OphCLIP raises on purpose."""


class ConfigError(OphclipError, ValueError):
    """A config file or override is missing, malformed, or has an unknown key or wrong type."""


class DataError(OphclipError, ValueError):
    """An input file (video, manifest, annotation, captions) is missing or malformed."""


class ModelError(OphclipError, ValueError):
    """A model name, checkpoint or weight file is unknown or incompatible."""
