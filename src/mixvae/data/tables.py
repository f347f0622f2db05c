"""Real-valued feature matrices: ``.csv`` tables and float ``.npy`` / ``.npz`` arrays of vectors.

A ``.csv`` has one sample a row; its first row is a header when any of its fields is not a
number. ``label_column`` (a header name, or a 0-based index) names a column of labels, kept apart
from the features and used only to evaluate. A ``.npy`` (N, D) or a ``.npz`` (``x_train`` /
``y_train`` and optionally ``x_test`` / ``y_test``, or ``x`` / ``y``) holds vectors when
:func:`mixvae.kinds.arrays.input_type` reads its array as vectors (floats outside [0, 1], or a width
that is no square image). Every bad input raises :class:`DataError` with one sentence.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mixvae.data.arrays import DataError, one_line

__all__ = ["VectorData", "label_names", "load_vectors", "read_csv", "x_keys"]

VectorData = dict[str, tuple[np.ndarray, "np.ndarray | None"]]  # split -> (X (N, D) float64, labels (N,) or None)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _labels(column: list[str]) -> np.ndarray:
    """Labels as int64: numbers as they are when they are integers, other values numbered in sorted order."""
    values = [_number(v) for v in column]
    if all(v is not None and float(v).is_integer() for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.unique(np.asarray(column), return_inverse=True)[1].astype(np.int64)


def _rows(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """(header or None, the rows of fields below it) of a .csv file, blank lines skipped."""
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and any(field.strip() for field in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected a comma-separated text file.") from None
    header = rows[0] if rows and any(_number(v) is None for v in rows[0]) else None
    return header, rows[1:] if header is not None else rows


def label_names(path: Path, label_column: str) -> list[str] | None:
    """The names of a .csv's labels in the order :func:`read_csv` numbers them (sorted), when they
    are not integers; None when they are (the labels are then their own names)."""
    header, body = _rows(path)
    if not body:
        return None
    column = _column_index(path, header, len(body[0]), label_column)
    assert column is not None
    values = [row[column] for row in body if len(row) > column]
    if all((v := _number(text)) is not None and float(v).is_integer() for text in values):
        return None
    return [str(name) for name in np.unique(np.asarray(values))]


def read_csv(path: Path, label_column: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The features (N, D) float64 and, with ``label_column``, the labels (N,) int64 of a .csv file."""
    header, body = _rows(path)
    if not body:
        raise DataError(f"{path} holds no rows of numbers; expected one sample per row.")
    width = len(body[0])
    for i, row in enumerate(body):
        if len(row) != width:
            raise DataError(f"{path}, row {i + 1 + (header is not None)}: {len(row)} fields where the first row has "
                            f"{width}; expected the same number of fields in every row.")
    column = _column_index(path, header, width, label_column)
    labels = _labels([row[column] for row in body]) if column is not None else None
    features = [j for j in range(width) if j != column]
    if not features:
        raise DataError(f"{path} has no feature column besides the labels; expected at least one.")
    X = np.empty((len(body), len(features)))
    for i, row in enumerate(body):
        for j, c in enumerate(features):
            value = _number(row[c])
            if value is None:
                name = header[c] if header is not None else str(c)
                raise DataError(f"{path}, row {i + 1 + (header is not None)}, column {name!r}: {row[c]!r} is not a "
                                f"number; expected numbers (name a label column with --label-column).")
            X[i, j] = value
    return X, labels


def _column_index(path: Path, header: list[str] | None, width: int, label_column: str | None) -> int | None:
    if label_column is None:
        return None
    if header is not None and label_column in header:
        return header.index(label_column)
    if label_column.lstrip("-").isdigit() and -width <= int(label_column) < width:
        return int(label_column) % width
    names = f"one of {header} or " if header is not None else ""
    raise DataError(f"{path} has no column {label_column!r}; expected {names}an index in 0..{width - 1}.")


def x_keys(archive: np.lib.npyio.NpzFile) -> tuple[str, ...]:
    for keys in (("x_train", "y_train", "x_test", "y_test"), ("x", "y")):
        if keys[0] in archive.files:
            return keys
    raise DataError(f"the archive has keys {sorted(archive.files)}; expected x_train (and y_train, x_test, y_test) "
                    "or x (and y).")


def load_vectors(path: Path, label_column: str | None = None) -> VectorData:
    """The splits of a vectors file: ``{"train": (X, labels)}`` and, for an .npz with x_test, ``"test"``."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return {"train": read_csv(path, label_column)}
    if label_column is not None:
        raise DataError(f"--label-column is for .csv files; {path} keeps its labels under y_train / y.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected a .npy or .npz array.") from None
    if isinstance(loaded, np.ndarray):
        return {"train": (loaded.astype(np.float64), None)}
    with loaded:
        keys = x_keys(loaded)
        out: VectorData = {}
        pairs = [("train", keys[0], keys[1])] + ([("test", keys[2], keys[3])] if len(keys) == 4 else [])
        for split, x_key, y_key in pairs:
            if x_key in loaded.files:
                labels = loaded[y_key].astype(np.int64) if y_key in loaded.files else None
                out[split] = (loaded[x_key].astype(np.float64), labels)
        return out
