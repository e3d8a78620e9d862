"""Reading annotation files: CSV tables, typed columns, frame numbers and class lists.

Every parse problem becomes a :class:`DataError` naming the file, the row (as a
1-based line number of the file) and what to do, so a user with a broken export
knows which line to fix.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .labels import check_length

_INT_RE = r"^[+-]?\d{1,18}(\.0*)?$"  # "12" or "12.0"; 18 digits fit int64


def read_table(
    path: str | Path,
    required: Sequence[str],
    sep: str = ",",
    what: str = "annotation file",
) -> pd.DataFrame:
    """Read a CSV as strings, tolerating a UTF-8 BOM and CRLF; check the header.

    Raises :class:`DataError` naming ``path`` for a missing file, bytes that are
    not UTF-8, a malformed table, or missing columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; check the dataset root (its adapter's docstring in ophclip.datasets gives the layout)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: {what} is empty; expected a header with columns {list(required)}")
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header (and drops them); that is an error here.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, ValueError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as '{sep}'-separated table ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; header is {list(df.columns)}, expected {list(required)} "
            f"separated by {sep!r}"
        )
    return df


def line_of(row: int) -> int:
    """1-based file line of 0-based data row ``row`` (the header is line 1)."""
    return row + 2


def parse_int(value: str, path: Path | str, row: int, column: str, minimum: int | None = 0) -> int:
    text = str(value).strip()
    # "12" and "12.0" (a float-typed export) are integers; "12.5", "", "1e3" are not.
    if not re.fullmatch(_INT_RE, text):
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not an integer (of at most 18 digits)")
    out = int(text.split(".")[0])
    if minimum is not None and out < minimum:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {out} is below {minimum}")
    return out


def parse_float(value: str, path: Path | str, row: int, column: str, minimum: float | None = 0.0) -> float:
    try:
        out = float(str(value).strip())
    except ValueError:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not a number") from None
    if not math.isfinite(out):
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {value!r} is not a finite number")
    if minimum is not None and out < minimum:
        raise DataError(f"{path}: line {line_of(row)}: column {column!r} = {out} is below {minimum}")
    return out


def int_column(df: pd.DataFrame, column: str, path: Path | str, minimum: int | None = 0) -> np.ndarray:
    """A column of integers; the first bad cell raises :class:`DataError` with its line."""
    text = df[column].astype(str).str.strip()
    ok = text.str.match(_INT_RE)
    if ok.all():
        # Vectorised path for large files (Cataract-101: 1,266 rows; OphNet: 17,508).
        values = text.str.split(".").str[0].astype(np.int64).to_numpy()
        if minimum is None or (values >= minimum).all():
            return values
    return np.array([parse_int(v, path, i, column, minimum) for i, v in enumerate(df[column])], dtype=np.int64)


def float_column(df: pd.DataFrame, column: str, path: Path | str, minimum: float | None = 0.0) -> np.ndarray:
    """A column of finite numbers; the first bad cell raises :class:`DataError` with its line."""
    values = pd.to_numeric(df[column].astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(values).all() and (minimum is None or (values >= minimum).all()):
        return values
    return np.array([parse_float(v, path, i, column, minimum) for i, v in enumerate(df[column])], dtype=np.float64)


def lookup_labels(
    values: Sequence[str], class_index: Mapping[str, int], path: Path | str, column: str
) -> np.ndarray:
    """Map label strings to class indices; an unknown label names file, line and the known classes."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = str(value).strip()
        if key not in class_index:
            known = ", ".join(map(repr, list(class_index)[:20]))
            raise DataError(
                f"{path}: line {line_of(i)}: unknown label {key!r} in column {column!r}; known classes: {known}. "
                "Fix the row or pass the dataset's class list"
            )
        out[i] = class_index[key]
    return out


def check_increasing(frames: np.ndarray, path: Path | str, column: str, lines: np.ndarray | None = None) -> None:
    """Frames must strictly increase; ``lines`` gives each row's file line (default: row + 2)."""
    bad = np.nonzero(np.diff(frames) <= 0)[0]
    if bad.size:
        i = int(bad[0]) + 1
        line = int(lines[i]) if lines is not None else line_of(i)
        raise DataError(
            f"{path}: line {line}: {column} {frames[i]} does not increase after {frames[i - 1]}; "
            "rows must be sorted by frame with no repeats"
        )


def check_within(
    frames: np.ndarray, n_frames: int, path: Path | str, column: str, video: str, lines: np.ndarray | None = None
) -> None:
    """Frame indices must lie inside the video (0 .. n_frames-1)."""
    if n_frames <= 0:
        raise DataError(f"{path}: video {video!r} is empty (0 frames); remove it or fix its frame count")
    bad = np.nonzero(frames >= n_frames)[0]
    if bad.size:
        i = int(bad[0])
        line = int(lines[i]) if lines is not None else line_of(i)
        raise DataError(
            f"{path}: line {line}: {column} {frames[i]} is past the end of video {video!r}, "
            f"which has {n_frames} frames (0..{n_frames - 1})"
        )


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]



# --------------------------------------------------------------------------- per-frame CSVs


def read_frame_column(df: pd.DataFrame, path: Path | str, column: str, frame_base: int) -> np.ndarray:
    """The frame column as 0-based indices, strictly increasing."""
    frames = int_column(df, column, path, minimum=frame_base) - frame_base
    check_increasing(frames, path, column)
    return frames


def per_frame_labels(
    frames: np.ndarray, values: np.ndarray, n_frames: int | None, path: Path | str, column: str, video: str
) -> np.ndarray:
    """Scatter row values (1-D labels or 2-D multi-hot) onto a per-frame array; unlisted frames get -1."""
    if len(frames) == 0:
        raise DataError(f"{path}: video {video!r} is empty (no annotated frames)")
    n = check_length(int(frames[-1]) + 1 if n_frames is None else n_frames, path, video)
    check_within(frames, n, path, column, video)
    shape = (n,) if values.ndim == 1 else (n, values.shape[1])
    out = np.full(shape, -1, dtype=np.int64 if values.ndim == 1 else np.int8)
    out[frames] = values
    return out


def annotation_files(folder: str | Path, pattern: str = "*.csv", what: str = "annotation") -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    files = sorted(folder.glob(pattern), key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no {what} files matching {pattern!r}")
    return files


def check_annotation_length(
    frames: np.ndarray, n_video: int | None, path: Path, video_id: str, source: str, tolerance: int
) -> int:
    """The frame count to use: the video's, after checking the annotated ``frames`` fit it."""
    if len(frames) == 0:
        raise DataError(f"{path}: video {video_id!r} is empty (no annotated frames)")
    n_annot = int(frames[-1]) + 1
    if n_video is None:
        return n_annot
    if n_annot > n_video:
        raise DataError(
            f"{path}: line {line_of(len(frames) - 1)}: frame {n_annot - 1} is past the end of video {video_id!r} "
            f"({source} has {n_video} frames)"
        )
    if n_video - n_annot > tolerance:
        raise DataError(
            f"{source}: video {video_id!r} has {n_video} frames but {path} annotates {n_annot}; "
            "the annotation belongs to another cut of the video, or is truncated"
        )
    return n_video


def read_class_list(path: str | Path | None) -> list[str] | None:
    """A class list file: one name per line (blank lines and # comments skipped); None without a file."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: class-name file not found")
    names = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise DataError(f"{p}: class-name file lists no classes")
    return names
