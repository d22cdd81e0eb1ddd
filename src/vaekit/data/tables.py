"""CSV tables: a header row, numeric feature columns, an optional integer or categorical label column.

Every feature cell must be a finite number; a missing or non-numeric cell is a ``DataError``
naming the column and the 1-based line of the file. Features are standardised afterwards with
the generic ``standardize`` step (on by default for tables; statistics from the training split).

Preprocessing keys (all recorded, and reused when given back):
    columns: the feature columns, in order. Given, the file must have them (in any order) and no
        other columns except the label column and ``drop_columns``.
    label_column: the label column, or None for none. Default: the first column named label,
        class, target or y (any case) whose values are all integers.
    classes: for a label column of names, the sorted class names; label i is ``classes[i]``.
    drop_columns: columns to ignore (an id, a timestamp, ...).
    context_columns: numeric columns that are the context of a conditional model (``--condition
        columns``), not features: held as the ``Dataset``'s ``context`` (N, K), standardised with
        training statistics (the generic ``context_standardize`` step).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.arrays import check_finite
from vaekit.data.base import Dataset
from vaekit.data.files import open_file
from vaekit.data.preprocess import check_options
from vaekit.errors import DataError

LABEL_NAMES = ("label", "class", "target", "y")
OPTIONS = ("columns", "label_column", "classes", "drop_columns", "context_columns")


def read_csv(path: Path, options: dict[str, Any]) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Read a CSV file into {"train": Dataset (N, D)} and its preprocessing record (see the module docstring)."""
    check_options(options, "csv", OPTIONS)
    header, rows, lines = _read_cells(path)
    reuse = "columns" in options  # saved preprocessing, not a first load
    drop = _names(options.get("drop_columns", []), "drop_columns")
    missing_drop = [c for c in drop if c not in header]
    if missing_drop and not reuse:
        raise DataError(f"{path}: drop_columns {missing_drop} not in the header ({', '.join(header)})")
    table = _Table(path, header, rows, lines)
    context_columns = _names(options.get("context_columns", []), "context_columns")
    absent = [c for c in context_columns if c not in header]
    if absent:
        raise DataError(f"{path}: context column(s) {', '.join(absent)} not in the header ({', '.join(header)})")

    label_column = _label_column(table, options, drop)
    features = _feature_columns(table, options, label_column, drop, context_columns)

    x = np.stack([table.numbers(c, label_like=c.strip().lower() in LABEL_NAMES) for c in features], axis=1)
    with np.errstate(over="ignore"):
        tensor = torch.from_numpy(x.astype(np.float32))  # (N, D)
    check_finite(tensor, f"{path} (values too large for float32)")

    context = None
    if context_columns:
        with np.errstate(over="ignore"):
            context = torch.from_numpy(np.stack([table.numbers(c) for c in context_columns], axis=1).astype(np.float32))  # (N, K)
        check_finite(context, f"{path} (context values too large for float32)")

    classes = options.get("classes")
    labels = None
    if label_column is not None and label_column in header:
        labels, classes = table.labels(label_column, classes, fixed=reuse)
    record = {
        "format": "csv",
        "columns": features,
        "label_column": label_column,
        "classes": classes,
        "drop_columns": drop,
        "context_columns": context_columns,
        "standardize": True,
    }
    return {"train": Dataset(tensor, labels, context)}, record


def _label_column(table: _Table, options: dict[str, Any], drop: list[str]) -> str | None:
    """The given label column (checked), else the first integer column with a label-like name, else None."""
    path, header = table.path, table.header
    if "label_column" not in options:
        return next((c for c in header if c.strip().lower() in LABEL_NAMES and c not in drop and table.is_integer_like(c)), None)
    label_column = options["label_column"]
    if label_column is not None and not isinstance(label_column, str):
        raise DataError(f"label_column must be a column name or None, got {label_column!r}")
    if label_column is not None and label_column not in header and "columns" not in options:
        raise DataError(f"{path}: label column {label_column!r} not in the header ({', '.join(header)})")
    return label_column


def _feature_columns(table: _Table, options: dict[str, Any], label_column: str | None, drop: list[str], context: list[str]) -> list[str]:
    """The feature columns: the saved ones (the file must have them and no others), or on a first
    load every column that is not the label, dropped or context."""
    path, header = table.path, table.header
    if "columns" in options:  # saved preprocessing
        features = _names(options["columns"], "columns")
        absent = [c for c in features if c not in header]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent)} (the data was prepared with them)")
        extra = [c for c in header if c not in features and c != label_column and c not in drop and c not in context]
        if extra:
            raise DataError(f"{path}: unexpected column(s) {', '.join(extra)}; add them to drop_columns to ignore them")
    else:
        if label_column in context:
            raise DataError(f"{path}: column {label_column!r} cannot be both the label column and a context column")
        features = [c for c in header if c != label_column and c not in drop and c not in context]
    if not features:
        raise DataError(f"{path}: no feature columns")
    return features


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{key} must be a list of column names, got {value!r}")
    return list(value)


def _read_cells(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, the rows of cell strings, and each row's 1-based line number."""
    with open_file(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    end = 0  # last line of the previous row; a row (with quoted newlines) may span lines
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header is None:
                header = [name.strip() for name in row]
                _check_header(path, header, start)
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {start} has {len(row)} fields, expected {len(header)}")
            rows.append(row)
            lines.append(start)
    except csv.Error as e:
        raise DataError(f"{path}: line {end + 1}: malformed CSV ({e})") from None
    if header is None:
        raise DataError(f"{path}: empty CSV file")
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return header, rows, lines


def _check_header(path: Path, header: list[str], line: int) -> None:
    if any(not name for name in header):
        raise DataError(f"{path}: line {line}: the header has an empty column name")
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: line {line}: duplicate column name {name!r}")
        seen.add(name)
    if all(_is_number(name) for name in header):
        raise DataError(f"{path}: the first line looks like data; add a header row of column names")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Table:
    """Cell strings of one CSV, with column lookups that report a bad cell by column and line."""

    def __init__(self, path: Path, header: list[str], rows: list[list[str]], lines: list[int]):
        self.path, self.header, self.rows, self.lines = path, header, rows, lines
        self.index = {name: j for j, name in enumerate(header)}

    def column(self, name: str) -> list[str]:
        j = self.index[name]
        return [row[j] for row in self.rows]

    def is_integer_like(self, name: str) -> bool:
        try:
            values = np.array(self.column(name), dtype=np.float64)
        except (ValueError, OverflowError):
            return False
        return bool(np.isfinite(values).all() and (values == np.round(values)).all())

    def numbers(self, name: str, *, label_like: bool = False) -> np.ndarray:
        """The column as float64; the first missing, non-numeric or non-finite cell is a DataError."""
        cells = self.column(name)
        try:
            values = np.array(cells, dtype=np.float64)
        except (ValueError, OverflowError):
            values = None
        if values is not None and np.isfinite(values).all():
            return values
        if values is None:
            bad = next((i for i, cell in enumerate(cells) if not _is_number(cell)), None)
            if bad is None:
                raise DataError(f"{self.path}: column {name!r}: cannot parse as numbers")
            problem = "missing value" if not cells[bad].strip() else f"non-numeric value {cells[bad]!r}"
        else:
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            problem = f"non-finite value {cells[bad]!r}"
        hint = f" (to use it as labels, set label_column={name!r})" if label_like else ""
        raise DataError(f"{self.path}: column {name!r}, line {self.lines[bad]}: {problem}{hint}")

    def labels(self, name: str, classes: Any, *, fixed: bool) -> tuple[torch.Tensor, list[str] | None]:
        """Integer labels, or class names mapped to indices into ``classes``.

        ``classes`` None means integer labels when the column holds integers, else the sorted
        names found; with ``fixed`` (saved preprocessing) None means integer labels only.
        """
        cells = [cell.strip() for cell in self.column(name)]
        for i, cell in enumerate(cells):
            if not cell:
                raise DataError(f"{self.path}: column {name!r}, line {self.lines[i]}: missing label")
        if classes is None and (fixed or self.is_integer_like(name)):
            values = self.numbers(name)
            if (values != np.round(values)).any() or (np.abs(values) > 2**53).any():
                raise DataError(f"{self.path}: column {name!r}: labels must be integers or class names")
            return torch.from_numpy(values.astype(np.int64)), None
        if classes is None:
            classes = sorted(set(cells))
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise DataError(f"classes must be a list of class names, got {classes!r}")
        lookup = {c: i for i, c in enumerate(classes)}
        codes = np.array([lookup.get(c, -1) for c in cells], dtype=np.int64)
        for i in np.flatnonzero(codes < 0):
            raise DataError(f"{self.path}: column {name!r}, line {self.lines[i]}: unknown class {cells[i]!r}")
        return torch.from_numpy(codes), classes


def context_vector(record: dict[str, Any], values: list[str]) -> torch.Tensor:
    """The standardised context vector (K,) of a run trained on context columns, from ``values`` in the
    columns' own units: K numbers in the columns' order, or ``NAME=VALUE`` pairs (a column not named
    is held at its training mean). A one-line ``DataError`` names what is wrong."""
    columns = list(record.get("context_columns") or [])
    stats = record.get("context_standardize")
    if not columns or not isinstance(stats, dict):
        raise DataError("--context needs a model conditioned on context columns (trained with --context-columns)")
    mean, std = stats["mean"], stats["std"]
    raw = list(mean)  # unnamed columns: their training mean
    named = [v for v in values if "=" in v]
    if named and len(named) != len(values):
        raise DataError("give --context as NAME=VALUE pairs or as plain values, not both")
    if named:
        for item in values:
            name, _, text = item.partition("=")
            if name.strip() not in columns:
                raise DataError(f"--context: no context column {name.strip()!r}; the model's are {', '.join(columns)}")
            raw[columns.index(name.strip())] = _context_number(text, name.strip())
    else:
        if len(values) != len(columns):
            raise DataError(f"--context needs {len(columns)} values ({', '.join(columns)}), got {len(values)}")
        raw = [_context_number(text, name) for text, name in zip(values, columns)]
    return torch.tensor([(v - m) / s for v, m, s in zip(raw, mean, std)], dtype=torch.float32)


def context_names(record: dict[str, Any], k: int) -> list[str]:
    """The names of a run's K context columns (``context[i]`` where none are recorded)."""
    columns = list(record.get("context_columns") or [])
    return columns if len(columns) == k else [f"context[{i}]" for i in range(k)]


def raw_context(record: dict[str, Any], vector: torch.Tensor) -> list[float]:
    """A standardised context vector (..., K) back in its columns' own units, as a flat list."""
    stats = record.get("context_standardize") or {}
    if not stats:
        return vector.flatten().tolist()
    return (
        (vector.double() * torch.tensor(stats["std"], dtype=torch.float64) + torch.tensor(stats["mean"], dtype=torch.float64))
        .flatten()
        .tolist()
    )


def describe_context(record: dict[str, Any], vector: torch.Tensor) -> str:
    """``age 40, income 52.5``: a standardised context vector (K,) in its columns' own units."""
    names = context_names(record, len(vector))
    return ", ".join(f"{name} {v:.4g}" for name, v in zip(names, raw_context(record, vector)))


def _context_number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise DataError(f"--context: {name} must be a finite number, got {text!r}")
    return value
