"""Atomic file writes: write a temporary sibling (``name.tmp``), fsync, then ``os.replace``.

A kill at any moment leaves either the old file or the new one, never half of one
(open_clip's checkpoint pattern). :func:`atomic_path` is the one mechanism; the
``atomic_write_*`` helpers are it applied to the common formats. Writers of other
formats (torch, safetensors, numpy, matplotlib) use :func:`atomic_path` directly::

    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DataError


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``name.tmp``); on success move it onto ``path``.

    ``suffix`` is appended to the temporary name for writers that infer the format from
    the extension (``np.save``, ``savefig``). The temporary may be a file or a folder; a
    folder replaces an existing folder of the same name (the old one is moved aside to
    ``.name.old`` for the swap, and moved back by the next write if a crash fell between).
    On error the temporary is removed and the old ``path`` is untouched. One writer per
    path at a time: the temporary's name is fixed, so a stale one from a killed run is reused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{suffix}")
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        os.replace(old, path)  # a crash between the two renames below: the old folder comes back
    _remove(tmp)
    try:
        yield tmp
        _fsync_tree(tmp)
        if tmp.is_dir() and path.is_dir():
            # os.replace cannot overwrite a non-empty folder: move the old one aside first.
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power loss
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: str | Path, df: Any) -> Path:
    """Write a pandas DataFrame as Parquet, without its index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def read_json(path: str | Path, error: type[Exception] = DataError, missing: str = "") -> Any:
    """A JSON file's content; a missing file or invalid JSON raises ``error`` naming the file.

    ``missing`` says what the file should have been and how to make one, for the error.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} not found" + (f": {missing}" if missing else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (videos and weight files do not fit comfortably in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(path: Path) -> None:
    """fsync a file, or every file of a folder and the folders themselves, so the rename moves data on disk."""
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    elif path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                with open(child, "rb+") as f:
                    os.fsync(f.fileno())
            elif child.is_dir():
                _fsync_dir(child)
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
