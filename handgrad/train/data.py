"""Data for training: the tutorial's sine task, CSV series, scaling, and windows.

Size letters: N values in a series, C columns, T window length, B windows, D input features per
step, O outputs (the target columns).

A series is cut into windows of T consecutive rows; window i (rows i .. i+T-1) predicts the
target columns of row i+T (many-to-one, next value). Two ways to feed a window to the model:

- "position" (the tutorial's): one column only; step t gets the one-hot position vector scaled by
  the value, x_t = v_t e_t, so D = T and column t of U is the weight of step t.
- "steps" (the usual one, and the only one for several columns): step t gets the row of the
  series, x_t = (v_t^1, ..., v_t^C), so D = C.

The split is chronological: the first windows train, the last ones validate, and the scaling is
fitted on the rows the training windows touch only.
"""
from __future__ import annotations

import csv
import io
import math
import os
from array import array
from typing import NamedTuple, Optional

import numpy as np

INPUTS = ("position", "steps")
SCALINGS = ("maxabs", "minmax", "none")


class Series(NamedTuple):
    """A multivariate series and where it came from."""

    values: np.ndarray   # (N, C) float64
    columns: tuple       # C column names
    source: str          # "sine" or the CSV path
    time: Optional[np.ndarray] = None   # (N,) the time of each row (e.g. the year), or None
    time_name: str = ""  # what `time` is ("YEAR"); "" when time is None
    dropped: tuple = ()  # ("name: why", ...) columns of the CSV that are not numbers


class Scaler(NamedTuple):
    """scaled = (value - center) / scale, per column. `scale` is the tutorial's `max_val`."""

    center: np.ndarray   # (C,)
    scale: np.ndarray    # (C,)

    def transform(self, values):
        """values (..., C) -> scaled (..., C)."""
        return (values - self.center) / self.scale

    def inverse(self, scaled, cols=None):
        """scaled (..., C) (or (..., len(cols)) for the columns `cols`) -> data units."""
        if cols is None:
            return scaled * self.scale + self.center
        cols = list(cols)
        return scaled * self.scale[cols] + self.center[cols]


class Windows(NamedTuple):
    """Model-ready windows (scaled)."""

    xs: np.ndarray       # (B, T, D)
    ys: np.ndarray       # (B, O)
    rows: np.ndarray     # (B,) the row of the series each window predicts


class Dataset(NamedTuple):
    """A chronologically split, scaled task."""

    series: Series
    scaler: Scaler
    inputs: str          # "position" | "steps"
    window: int          # T
    target_cols: tuple   # indices of the target columns (O of them)
    train: Windows
    val: Windows


def sine_series(n: int = 200) -> Series:
    """The tutorial's data: sin(k) for k = 0 .. n-1, one column."""
    return Series(np.sin(np.arange(n, dtype=np.float64))[:, None], ("sin",), "sine")


def bundled_csv(name: str) -> Optional[str]:
    """The path of a series shipped with handgrad (`sunspots`, `us_macro`, with or without
    `.csv`), or None."""
    stem = name[:-4] if name.lower().endswith(".csv") else name
    if stem not in BUNDLED:
        return None
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        f"{stem}.csv")


def resolve_csv(name: str) -> str:
    """`name` if a file of that name exists, else the bundled series of that name; ValueError
    otherwise."""
    if os.path.lexists(name):
        return name
    found = bundled_csv(name)
    if found is None:
        raise ValueError(f"cannot read the CSV file {name!r}: no such file (bundled series, "
                         f"usable by name from any folder: {', '.join(BUNDLED)})")
    return found


def load_csv(path: str, columns=None) -> Series:
    """Read a CSV file with a header row; keep `columns` (all numeric columns when None).

    The file is streamed row by row into float64 columns (8 bytes per kept value); only a
    regular file of at most the file limit (handgrad._files, HANDGRAD_MAX_FILE_MB) is read. A
    UTF-8 byte order mark is ignored; blank lines are skipped, and counted in the line numbers
    of messages (they are the lines an editor shows).

    Without `columns`, a column none of whose values is a number (a date, a label) is left out
    and named in `Series.dropped`; a column named year, time or date (TIME_NAMES, any case) is
    the time axis (`Series.time`), not data. A column that is numbers except for some cells is
    an error naming the first such cell's line and column. Raises ValueError naming the file,
    line and column for a missing column, a non-numeric, missing or non-finite value (or one
    beyond +-MAX_ABS_VALUE), or fewer than two data rows.
    """
    from .._files import open_regular
    with open_regular(path) as raw:
        try:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            reader = csv.reader(text)
            header, found = _read_rows(reader, path, columns)
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a UTF-8 text CSV file") from None
        except csv.Error as exc:
            raise ValueError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    rows = found.rows
    if rows < 2:
        raise ValueError(f"{path}: expected a header row and at least 2 data rows, got {rows} "
                         "data row(s)")
    if columns is None:
        mixed = [(c, found.bad[c]) for c in header if found.bad.get(c) and found.numeric[c]]
        if mixed:
            name, (line, cell) = mixed[0]
            raise ValueError(f"{path}, line {line}: column {name!r} holds {cell!r}, not a "
                             "number, among numbers: fix or remove that row, or leave the column "
                             "out with --columns")
        dropped = tuple(f"{c} (line {found.bad[c][0]}: {found.bad[c][1]!r})" for c in header
                        if found.bad.get(c))
        time_col = next((c for c in header if c.lower() in TIME_NAMES and c not in found.bad),
                        None)
        skip = {time_col, "quarter" if time_col and time_col.lower() == "year" else None}
        columns = [c for c in header if c not in found.bad and c.lower() not in skip
                   and c not in skip]
        if not columns:
            raise ValueError(f"{path}: no numeric column found (columns: {', '.join(header)})")
    else:
        dropped = ()
        time_col = next((c for c in header if c.lower() in TIME_NAMES and c in found.values
                         and c not in columns), None)
    values = np.stack([np.frombuffer(found.values[c], dtype=np.float64) for c in columns], 1)
    time = None
    if time_col is not None:
        time = np.frombuffer(found.values[time_col], dtype=np.float64).copy()
        quarter = next((c for c in found.values if c.lower() == "quarter"), None)
        if time_col.lower() == "year" and quarter is not None:
            time = time + (np.frombuffer(found.values[quarter], dtype=np.float64) - 1) / 4
    return Series(values, tuple(columns), str(path), time, time_col or "", dropped)


TIME_NAMES = ("year", "time", "date")    # a column of this name (any case) is the time axis
BUNDLED = ("sunspots", "us_macro")       # series shipped in handgrad/data
MAX_ABS_VALUE = 1e150                    # data units: squared errors must stay finite (1e308)


class _Found(NamedTuple):
    rows: int
    values: dict         # column -> array('d') of its values (numeric columns only)
    numeric: dict        # column -> True if any of its cells is a number
    bad: dict            # column -> (line, cell) of its first cell that is not a number


def _read_rows(reader, path, columns):
    """Stream the rows of `reader`: (header, _Found). With `columns` given, only those are
    parsed and the first bad cell is an error; else every column is parsed and bad cells are
    recorded (the caller decides)."""
    header = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [h.strip() for h in row]
            break
    if header is None:
        raise ValueError(f"{path}: expected a header row and at least 2 data rows, got an "
                         "empty file")
    if columns is not None:
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column named {', '.join(map(repr, missing))}; "
                             f"the columns are {', '.join(map(repr, header))}")
    wanted = header if columns is None else list(dict.fromkeys(
        [*columns, *(h for h in header if h.lower() in TIME_NAMES or h.lower() == "quarter")]))
    index = {c: header.index(c) for c in wanted}
    strict = set() if columns is None else set(columns)
    values = {c: array("d") for c in wanted}
    numeric = dict.fromkeys(wanted, False)
    bad = {}
    rows = 0
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue                                         # blank lines are not data
        line = reader.line_num
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: expected {len(header)} fields like the "
                             f"header, got {len(row)}")
        rows += 1
        for c, k in index.items():
            cell = row[k]
            try:
                value = float(cell)
            except ValueError:
                if c in strict:
                    raise ValueError(f"{path}, line {line}: column {c!r} must be numeric, got "
                                     f"{cell.strip()!r}") from None
                if c not in bad:
                    bad[c] = (line, cell.strip())
                    values.pop(c, None)
                continue
            if not (math.isfinite(value) and abs(value) <= MAX_ABS_VALUE):
                if columns is not None and c not in strict:     # a time column: not data
                    bad.setdefault(c, (line, cell.strip()))
                    values.pop(c, None)
                    continue
                what = "finite" if not math.isfinite(value) else f"within +-{MAX_ABS_VALUE:g}"
                raise ValueError(f"{path}, line {line}: column {c!r} must be {what}, got "
                                 f"{cell.strip()!r}")
            numeric[c] = True
            if c in values:
                values[c].append(value)
    return header, _Found(rows, values, numeric, bad)


def fit_scaler(values, method: str = "maxabs") -> Scaler:
    """Fit on `values` (N, C), the training rows only.

    "maxabs": divide by max|v| (the tutorial's `max_val`), "minmax": map [min, max] to [-1, 1],
    "none": identity. A constant column cannot be scaled (or learned from): ValueError.
    """
    if method not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {method!r}")
    C = values.shape[1]
    if method == "none":
        return Scaler(np.zeros(C), np.ones(C))
    lo, hi = values.min(axis=0), values.max(axis=0)
    if method == "maxabs":
        center, scale = np.zeros(C), np.maximum(np.abs(lo), np.abs(hi))
    else:
        center, scale = (hi + lo) / 2, (hi - lo) / 2
    return Scaler(center, scale)


def check_values(series: Series) -> None:
    """Every value finite and within +-MAX_ABS_VALUE: larger ones overflow when squared (the
    RMSE in data units) or scaled; ValueError naming the column and row otherwise."""
    v = series.values
    bad = ~(np.isfinite(v) & (np.abs(v) <= MAX_ABS_VALUE))
    if np.any(bad):
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"column {series.columns[j]!r}, row {i}: the value {v[i, j]!r} is not "
                         f"a finite number within +-{MAX_ABS_VALUE:g} (larger values overflow "
                         "float64 when squared); rescale the column")


def check_columns(series: Series, rows: int) -> None:
    """A column that is constant over the first `rows` rows carries nothing to learn from."""
    part = series.values[:rows]
    for j, name in enumerate(series.columns):
        if np.all(part[:, j] == part[0, j]):
            raise ValueError(f"column {name!r} is constant ({part[0, j]:g}) over the first {rows} "
                             "rows (the training part): nothing to learn from or to scale")


def make_windows(scaled, window: int, inputs: str, target_cols, first: int, count: int) -> Windows:
    """Windows first .. first+count-1 of `scaled` (N, C): rows i..i+T-1 predict row i+T."""
    T = window
    idx = np.arange(first, first + count)
    steps = scaled[idx[:, None] + np.arange(T)]              # (B, T, C)
    if inputs == "position":
        xs = steps[:, :, 0, None] * np.eye(T)                # x_t = v_t e_t, (B, T, T)
    else:
        xs = steps                                           # x_t = row t, (B, T, C)
    ys = scaled[idx + T][:, list(target_cols)]               # (B, O)
    return Windows(np.ascontiguousarray(xs), ys, idx + T)


def build_dataset(series: Series, window: int, inputs: str, targets=None,
                  val_fraction: float = 1 / 3, scaling: str = "maxabs") -> Dataset:
    """Split `series` chronologically into training and validation windows, scale, and window.

    targets: column names to predict (default: the first column). The last
    round(val_fraction * number of windows) windows validate (at least 1).
    """
    N, C = series.values.shape
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    if inputs == "position" and C != 1:
        raise ValueError(f"the position input takes one column (D = T); got {C} columns "
                         f"{list(series.columns)}: use --input steps for several columns")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    n_windows = N - window
    if n_windows < 2:
        raise ValueError(f"window {window} is too long for a series of {N} rows: it needs at "
                         f"least {window + 2} rows (one training and one validation window)")
    n_val = min(max(1, round(val_fraction * n_windows)), n_windows - 1)
    n_train = n_windows - n_val
    targets = [series.columns[0]] if targets is None else list(targets)
    missing = [t for t in targets if t not in series.columns]
    if missing or not targets:
        raise ValueError(f"target(s) {missing or targets} must be among the columns "
                         f"{list(series.columns)}")
    target_cols = tuple(series.columns.index(t) for t in targets)
    train_rows = n_train + window                            # rows the training windows touch
    check_values(series)
    check_columns(series, train_rows)
    scaler = fit_scaler(series.values[:train_rows], scaling)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = scaler.transform(series.values)
    if not np.all(np.isfinite(scaled)):
        j = int(np.argwhere(~np.isfinite(scaled))[0, 1])
        raise ValueError(f"column {series.columns[j]!r} cannot be scaled with {scaling!r}: "
                         "its scaled values overflow float64; rescale the column")
    return Dataset(series, scaler, inputs, window, target_cols,
                   make_windows(scaled, window, inputs, target_cols, 0, n_train),
                   make_windows(scaled, window, inputs, target_cols, n_train, n_val))


def tutorial_dataset() -> Dataset:
    """The tutorial's task: sin(0..199), windows of 50, 100 training and 50 validation windows."""
    return build_dataset(sine_series(200), 50, "position", None, val_fraction=1 / 3)
