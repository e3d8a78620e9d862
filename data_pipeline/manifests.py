"""The dataset-root contract (DESIGN.md § Data contracts): table schemas, writers and readers.

A dataset root is a folder::

    videos.parquet        one row per source video
    segments.parquet      one row per ASR or caption segment
    clips.parquet         one row per clip-text pair
    video_texts.parquet   one row per narrated video (title summary)
    quarantine.parquet    one row per rejected input
    frames/               the decoded low-resolution frame cache (see frame_cache.py)
    run.json              config, versions, model ids, counts per stage

The pipeline writes it and the trainer and evaluators read it. Writers are atomic;
readers check the columns and say which file lacks what.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ophbase.io import atomic_write_parquet

from .errors import InputError

# Required columns, in order. Extra columns are kept (stages may add their own).
SCHEMAS: dict[str, dict[str, str]] = {
    "videos": {
        "video_id": "string",
        "path": "string",
        "sha256": "string",
        "duration_s": "float64",
        "fps": "float64",
        "width": "int64",
        "height": "int64",
        "has_audio": "bool",
        "kind": "string",  # narrated | silent | (empty while undecided)
        "title": "string",
        "description": "string",
        "status": "string",  # ok | quarantined
        "error": "string",
    },
    "segments": {
        "video_id": "string",
        "seg_id": "string",
        "start": "float64",
        "end": "float64",
        "text": "string",
        "avg_logprob": "float64",
        "no_speech_prob": "float64",
        "source": "string",
    },
    "clips": {
        "clip_id": "string",
        "video_id": "string",
        "start": "float64",
        "end": "float64",
        "narration": "string",
        "text": "string",
        "rewrite_model": "string",
    },
    "video_texts": {
        "video_id": "string",
        "title": "string",
        "summary_json": "string",
        "summary_text": "string",
        "summarize_model": "string",
    },
    "quarantine": {
        "path": "string",
        "stage": "string",
        "error": "string",
    },
}

NARRATED = "narrated"
SILENT = "silent"


def manifest_path(root: str | Path, table: str) -> Path:
    if table not in SCHEMAS:
        raise KeyError(f"unknown manifest table {table!r}; known: {', '.join(SCHEMAS)}")
    return Path(root) / f"{table}.parquet"


def empty_table(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in SCHEMAS[table].items()})


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Order the required columns first and cast them to the schema's dtypes."""
    schema = SCHEMAS[table]
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise InputError(f"{table} table lacks columns {missing}; required: {list(schema)}")
    extra = [c for c in df.columns if c not in schema]
    out = df[list(schema) + extra].copy()
    for col, dtype in schema.items():
        if dtype == "string":
            out[col] = out[col].astype("string").fillna("")
        else:
            out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def write_manifest(root: str | Path, table: str, df: pd.DataFrame) -> Path:
    path = manifest_path(root, table)
    atomic_write_parquet(path, conform(table, df))
    return path


def read_manifest(root: str | Path, table: str, required: bool = True) -> pd.DataFrame:
    """Read one table; a missing optional table reads as empty, a missing required one is an error."""
    path = manifest_path(root, table)
    if not path.is_file():
        if required:
            raise InputError(
                f"{path} not found: {Path(root)} is not a complete dataset root "
                f"(run `ophclip pipeline run CONFIG` to build one)"
            )
        return empty_table(table)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several unrelated types for a damaged file
        raise InputError(f"{path}: cannot read parquet ({e}); delete it and rerun the stage that writes it") from None
    missing = [c for c in SCHEMAS[table] if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing}; required: {list(SCHEMAS[table])}")
    return df
