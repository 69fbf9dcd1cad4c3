"""Tabular records as data: a CSV file with a label column, NumPy feature matrices [N, F], and scikit-learn's
bundled breast-cancer records.

``dpaudit.training.data.load_csv(path, label_column, categorical=())`` reads ``csv:PATH``. The file is read with pandas when it is
installed (``pip install 'dpaudit[tabular]'``), else with the standard library's ``csv`` module; either way every
cell is read as text and typed here, by one set of rules, so both readers give the same dataset:

- the first row names the columns; every other row has one cell per column (blank lines are skipped);
- an empty cell, or one of ``MISSING`` (nan, NA, null, ?...), is a missing value and is refused: dpaudit does
  not impute (an imputation fitted on the records would be a release of its own);
- a column whose every cell is a finite number is numeric; a column with no number in it is categorical, and
  so is every column named in ``categorical`` (integer codes, postcodes); a column that mixes numbers and
  strings is refused, since either reading could be wrong;
- categorical columns are one-hot encoded (one 0/1 feature per value, values in sorted order); numeric columns
  are kept as they are, and standardised on their way into the model (``Normalisation``);
- the label column's values become class indices 0..K-1 (numerically sorted when they are all numbers, else
  sorted as text), and a label column with one class is refused.

Standardisation. Each numeric feature is centred and scaled by its mean and (population) standard deviation
over ALL records, members and non-members alike, before any split is drawn, as images are normalised: a fixed
function of the whole dataset, so the in and out worlds of the audit do not differ by it (no membership
information). One-hot features stay 0/1. A constant numeric feature gets std 1.

Every problem is a one-line ``DPAuditError`` naming the column, the row (1-based line of the file, header = 1)
and what to do.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from dpaudit.errors import DPAuditError

# Cells read as missing values (compared after stripping, case-insensitively): pandas' usual markers, less
# "None" and "NA"-like words that are real categories more often than not ("none" smokers).
MISSING = frozenset({"", "nan", "na", "n/a", "null", "?", "-nan", "#n/a"})
# A categorical column with more distinct values than this, and more than half as many as there are rows, is
# an identifier or free text: one-hot encoding it would give every record a feature of its own.
MAX_CATEGORIES = 1000
MAX_COLUMNS = 10_000


def default_reader() -> str:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return "csv"
    return "pandas"


def read_csv_cells(path: Path, name: str, reader: str | None = None) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows of cells as text, 1-based line of each row) from a CSV file; refuses ragged rows.

    ``reader``: "pandas" or "csv" (default: pandas when installed)."""
    reader = reader or default_reader()
    if not path.is_file():
        raise DPAuditError(f"{name}: file {path} not found; give a CSV file whose first row names the columns")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DPAuditError(f"{name}: {path} is not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    except OSError as exc:
        raise DPAuditError(f"{name}: cannot read {path} ({exc.strerror or exc.__class__.__name__})") from None
    if "\x00" in text:
        raise DPAuditError(f"{name}: {path} holds NUL bytes, so it is not a CSV text file; export it as CSV")
    if reader == "pandas":
        header, rows, lines = _read_pandas(path, name, text)
    else:
        header, rows, lines = _read_stdlib(name, text)
    if not header:
        raise DPAuditError(f"{name}: {path} is empty; the first row must name the columns")
    if len(header) > MAX_COLUMNS:
        raise DPAuditError(f"{name}: {len(header)} columns, more than {MAX_COLUMNS}; select the features first")
    for i, h in enumerate(header):
        if not h.strip():
            raise DPAuditError(f"{name}: column {i + 1} of the header has no name; name every column")
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in seen:
            raise DPAuditError(f"{name}: columns {seen[h] + 1} and {i + 1} are both named {h!r}; give each its own name")
        seen[h] = i
    return header, rows, lines


def _ragged(name: str, line: int, got: int, want: int) -> DPAuditError:
    return DPAuditError(f"{name}: line {line} has {got} field(s) but the header has {want}; every row needs one "
                        f"cell per column (ragged CSV)")


def _read_stdlib(name: str, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        reader = csv.reader(text.splitlines(keepends=True), strict=True)
        header: list[str] = []
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if not header:
                header = [h.strip() for h in row]
                continue
            if len(row) != len(header):
                raise _ragged(name, reader.line_num, len(row), len(header))
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DPAuditError(f"{name}: not a well-formed CSV (line {reader.line_num}: {exc}); fix its quoting") from None
    return header, rows, lines


def _read_pandas(path: Path, name: str, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """pandas' C parser, every cell as text (no NA conversion: MISSING decides here); its silent padding of
    short rows with NaN is caught by counting each row's fields in the raw text too."""
    import io

    import pandas as pd

    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                         skip_blank_lines=True, header=0, index_col=False)
    except pd.errors.EmptyDataError:
        return [], [], []
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[0]
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise _ragged(name, int(m.group(2)), int(m.group(3)), int(m.group(1))) from None
        raise DPAuditError(f"{name}: not a well-formed CSV ({msg[:120]}); fix its quoting") from None
    header = [str(h).strip() for h in df.columns]
    # pandas renames a repeated column "a" to "a.1"; the raw header decides whether names repeat.
    raw_header = next(csv.reader([text.splitlines()[0] if text.splitlines() else ""]), [])
    raw_header = [h.strip() for h in raw_header]
    if len(raw_header) == len(header):
        header = raw_header
    # Field counts and line numbers from the stdlib reader (pandas pads short rows with empty strings).
    _, _, lines = _read_stdlib(name, text)
    rows = df.to_numpy(dtype=object).tolist()
    if len(lines) != len(rows):
        raise DPAuditError(f"{name}: pandas read {len(rows)} rows where the file has {len(lines)}; "
                           f"check its quoting and line endings")
    return header, [[("" if c is None else str(c)) for c in r] for r in rows], lines


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def encode_table(header: list[str], rows: list[list[str]], lines: list[int], *, name: str, label_column: str,
                 categorical: tuple[str, ...] = ()) -> dict:
    """Type, check and encode a table of text cells (see the module docstring).

    Returns ``features`` float32 [N, F] (numeric values as read, one-hot 0/1), ``labels`` int64 [N],
    ``classes`` (the label values in class-index order), ``feature_names``, ``numeric`` (bool per feature),
    ``numeric_columns`` and ``categorical_columns`` (with their values)."""
    if label_column is None:
        raise DPAuditError(f"{name}: give --label-column NAME, the column that holds the classes (columns: "
                           f"{_shown(header)})")
    if label_column not in header:
        raise DPAuditError(f"{name}: no column named {label_column!r} for --label-column; the columns are "
                           f"{_shown(header)}")
    unknown = [c for c in categorical if c not in header]
    if unknown:
        raise DPAuditError(f"{name}: --categorical names {unknown[0]!r}, which is not a column; the columns are "
                           f"{_shown(header)}")
    if label_column in categorical:
        raise DPAuditError(f"{name}: --categorical names the label column {label_column!r}; labels are always "
                           f"classes, drop it from --categorical")
    if len(set(categorical)) != len(categorical):
        raise DPAuditError(f"{name}: --categorical names a column twice")
    if len(header) < 2:
        raise DPAuditError(f"{name}: only the label column {label_column!r}; a table needs at least one feature column")
    n = len(rows)
    if n < 2:
        raise DPAuditError(f"{name}: {n} data row(s); an audit needs records (rows after the header)")
    cols = list(zip(*rows)) if rows else [() for _ in header]
    # Missing cells first, everywhere: they are the most common problem and the fix is the same for all columns.
    for j, h in enumerate(header):
        for i, cell in enumerate(cols[j]):
            if cell.strip().lower() in MISSING:
                count = sum(1 for c in cols[j] if c.strip().lower() in MISSING)
                raise DPAuditError(f"{name}: column {h!r} has {count} missing/NaN cell(s), first on line {lines[i]} "
                                   f"({cell.strip()!r}); fill or drop those rows (dpaudit does not impute)")
    labels, classes = _labels(cols[header.index(label_column)], label_column, name, lines)
    blocks: list[np.ndarray] = []
    feature_names: list[str] = []
    numeric_flags: list[bool] = []
    numeric_columns: list[str] = []
    categorical_columns: dict[str, list[str]] = {}
    for j, h in enumerate(header):
        if h == label_column:
            continue
        cells = [c.strip() for c in cols[j]]
        values = [_number(c) for c in cells]
        is_num = [v is not None for v in values]
        if h not in categorical and all(is_num):
            arr = np.array(values, dtype=np.float64)
            bad = ~np.isfinite(arr)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DPAuditError(f"{name}: column {h!r} has {int(bad.sum())} infinite value(s), first on line "
                                   f"{lines[i]} ({cells[i]!r}); clean or drop those rows")
            blocks.append(arr[:, None])
            feature_names.append(h)
            numeric_flags.append(True)
            numeric_columns.append(h)
            continue
        if h not in categorical and any(is_num):
            n_num = sum(is_num)
            first_str = next(i for i, ok in enumerate(is_num) if not ok)
            first_num = next(i for i, ok in enumerate(is_num) if ok)
            if n - n_num <= max(1, n // 20):  # a stray string or two: say where, it is likely a typo
                what = f"is numeric but line {lines[first_str]} holds the string {cells[first_str]!r}"
            else:
                what = (f"mixes numbers and strings (line {lines[first_num]}: {cells[first_num]!r}, line "
                        f"{lines[first_str]}: {cells[first_str]!r})")
            raise DPAuditError(f"{name}: column {h!r} {what}; clean it, or name it with --categorical to treat "
                               f"every value as a category")
        cats = sorted(set(cells))
        if len(cats) > MAX_CATEGORIES or (len(cats) > 20 and len(cats) > n / 2):
            raise DPAuditError(f"{name}: categorical column {h!r} has {len(cats)} distinct values in {n} rows, like "
                               f"an identifier or free text; drop it (one-hot encoding it would give records "
                               f"features of their own)")
        index = {c: k for k, c in enumerate(cats)}
        onehot = np.zeros((n, len(cats)), dtype=np.float64)
        onehot[np.arange(n), [index[c] for c in cells]] = 1.0
        blocks.append(onehot)
        feature_names += [f"{h}={c}" for c in cats]
        numeric_flags += [False] * len(cats)
        categorical_columns[h] = cats
    features = np.concatenate(blocks, axis=1).astype(np.float32)
    return {"features": features, "labels": labels, "classes": classes, "feature_names": feature_names,
            "numeric": np.array(numeric_flags, dtype=bool), "numeric_columns": numeric_columns,
            "categorical_columns": categorical_columns}


def _labels(cells, column: str, name: str, lines: list[int]) -> tuple[np.ndarray, list[str]]:
    cells = [c.strip() for c in cells]
    values = sorted(set(cells))
    nums = [_number(v) for v in values]
    if all(v is not None for v in nums):
        values = [v for _, v in sorted(zip(nums, values))]  # 2 before 10
    if len(values) < 2:
        raise DPAuditError(f"{name}: the label column {column!r} holds one class ({values[0]!r}) in all "
                           f"{len(cells)} rows; a classifier needs at least 2")
    if len(values) > MAX_CATEGORIES or len(values) > len(cells) / 2:
        raise DPAuditError(f"{name}: the label column {column!r} has {len(values)} distinct values in "
                           f"{len(cells)} rows, too many to be classes; is --label-column the right column?")
    index = {v: k for k, v in enumerate(values)}
    return np.array([index[c] for c in cells], dtype=np.int64), values


def _shown(header: list[str], k: int = 12) -> str:
    return ", ".join(header[:k]) + (f", ... ({len(header)} in all)" if len(header) > k else "")


def feature_statistics(features: np.ndarray, numeric: np.ndarray | None = None) -> tuple[tuple, tuple]:
    """Per-feature standardisation from ALL records: numeric features by their mean and population std (std 1
    where constant), other (one-hot) features unchanged (mean 0, std 1). Returns (mean, std), one per feature;
    ``dpaudit.training.data.Normalisation.from_data`` wraps them."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DPAuditError(f"feature statistics need features [N, F] with N, F > 0, got {x.shape}")
    numeric = np.ones(x.shape[1], dtype=bool) if numeric is None else np.asarray(numeric, dtype=bool)
    mean = np.where(numeric, x.mean(axis=0), 0.0)
    std = np.where(numeric, x.std(axis=0), 1.0)
    std = np.where(std > 0, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def standardisation_text(n: int, n_numeric: int, categorical: dict[str, list[str]] | None = None) -> str:
    """What was done to the features, in words, for the report."""
    parts = []
    if n_numeric:
        parts.append(f"{n_numeric} numeric feature(s), each standardised by its mean and standard deviation over "
                     f"all {n} records (members and non-members alike: no membership information)")
    for col, cats in (categorical or {}).items():
        parts.append(f"{col!r} one-hot encoded into {len(cats)} 0/1 feature(s)")
    return "; ".join(parts)


def check_features(x: np.ndarray, what: str) -> np.ndarray:
    """[N, F] numeric (integer, bool or float) features -> float32, refusing NaN/inf and empty arrays."""
    if x.dtype == object:
        raise DPAuditError(f"{what} holds Python objects (dtype=object); save a numeric array (float32)")
    if x.dtype.kind not in "biuf":
        raise DPAuditError(f"{what} has dtype {x.dtype}; features must be numbers (encode text columns first, or "
                           f"use --dataset csv:PATH, which one-hot encodes them)")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DPAuditError(f"{what} is empty (shape {x.shape}); save at least one record with one feature")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            rec = int(np.flatnonzero(bad.any(axis=1))[0])
            raise DPAuditError(f"{what} has {int(bad.sum())} NaN/inf value(s), first in record {rec}; clean or drop "
                               f"those records")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DPAuditError(f"{what} holds values beyond float32's range (about 3.4e38); rescale them")
    return out
