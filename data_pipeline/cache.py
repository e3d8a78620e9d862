"""A content-addressed JSON cache on disk: one file per key, written atomically.

LLM outputs are cached under ``sha256(input, prompt, model, settings)`` so a rerun,
or a run resumed after a crash, costs nothing for work already done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ophbase.io import atomic_write_json

logger = logging.getLogger(__name__)


def cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class JsonCache:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str):
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning("ignoring damaged cache entry %s", path)
            return None

    def put(self, key: str, value) -> None:
        atomic_write_json(self._path(key), value)
