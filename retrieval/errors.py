"""The memory bank's one error type (``retrieval`` imports no other package of ours).

Messages name the id, row, file or argument at fault, say what was expected, and
say what to do. The ``ophclip`` CLI prints them as one line.
"""


class MemoryBankError(ValueError):
    """Bad vectors or ids given to a bank, an unknown id, or an unreadable bank folder."""
