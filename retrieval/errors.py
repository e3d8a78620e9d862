"""The memory bank's error type, in the shared family of :mod:`ophbase.errors`.

Messages name the id, row, file or argument at fault, say what was expected, and
say what to do. The ``ophclip`` CLI prints them as one line.
"""

from ophbase.errors import OphclipError


class MemoryBankError(OphclipError, ValueError):
    """Bad vectors or ids given to a bank, an unknown id, or an unreadable bank folder."""
