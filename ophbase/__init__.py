"""The shared base under every OphCLIP package: errors, atomic I/O, video probing, devices.

It lives in a package of its own because ``retrieval`` and ``data_pipeline`` sit below
``ophclip`` and must not import it, yet all three need the same few helpers and one error
root. It imports no other package of ours, and nothing heavy at import time: the modules
are imported by name (``from ophbase.io import atomic_write_json``).
"""
