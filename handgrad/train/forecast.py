"""Forecasting many steps ahead: the model is fed its own predictions.

Size letters: S forecast steps, T window length, C columns, O predicted (target) columns.

The model predicts the next row's target columns from the last T rows. To go further, the
prediction is appended as the next row and the window slides by one. Columns that the model reads
but does not predict (inputs that are not targets) are taken from the data while it lasts; past
the end of the data the model must predict every column it reads.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..bptt import predict
from .model import Model


class Forecast(NamedTuple):
    rows: np.ndarray          # (S,) the series rows that are forecast
    values: np.ndarray        # (S, O) forecasts in data units
    truth: np.ndarray         # (S, O) the true values where known, NaN elsewhere
    context_rows: np.ndarray  # (T,) the rows given as the starting window
    context: np.ndarray       # (T, O) their values of the target columns


def default_start(model: Model) -> int:
    """The first row of the validation part: a forecast over data the model never trained on."""
    return model.n_train + model.window


def step_inputs(window_rows, inputs: str):
    """The model input (1, T, D) for the scaled rows (T, C) of one window."""
    if inputs == "position":
        return (window_rows[:, 0] * np.eye(len(window_rows)))[None]    # x_t = v_t e_t
    return window_rows[None]


def forecast(model: Model, steps: int, start=None) -> Forecast:
    """Roll `model` forward for `steps` rows from row `start` (default: `default_start`).

    The window rows start-T .. start-1 come from the data; every later input row is the model's
    own prediction (for the target columns). Raises ValueError for impossible requests.
    """
    N, C = model.series.values.shape
    T = model.window
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    start = default_start(model) if start is None else start
    if isinstance(start, bool) or not isinstance(start, int) or not T <= start <= N:
        raise ValueError(f"start must be a row in [{T}, {N}] (the window of {T} rows before it "
                         f"must be data), got {start!r}")
    targets = list(model.target_cols)
    exogenous = [j for j in range(C) if j not in targets]
    if exogenous and start + steps > N:
        names = ", ".join(repr(model.series.columns[j]) for j in exogenous)
        raise ValueError(f"the model reads column(s) {names} but does not predict them, so it can "
                         f"forecast only while the data has them: at most {N - start} step(s) "
                         f"from row {start}; train with --target naming every column to go further")
    scaled = model.scaler.transform(model.series.values)               # (N, C)
    rows = np.zeros((T + steps, C))
    rows[:T] = scaled[start - T:start]
    out = np.empty((steps, len(targets)))
    for s in range(steps):
        o, _ = predict(model.params, step_inputs(rows[s:s + T], model.inputs), model.spec)
        row = start + s
        if exogenous:
            rows[T + s] = scaled[row]                                   # known inputs from data
        rows[T + s, targets] = o[0]                                     # own predictions
        out[s] = o[0]
    values = model.scaler.inverse(out, targets)
    frows = np.arange(start, start + steps)
    return Forecast(frows, values, _truth(model, frows), np.arange(start - T, start),
                    model.series.values[start - T:start][:, targets])


def _truth(model: Model, rows) -> np.ndarray:
    """True values of the target columns; the sine task's truth is known for every row."""
    N = model.series.values.shape[0]
    O = len(model.target_cols)
    if model.series.source == "sine":
        return np.sin(rows.astype(np.float64))[:, None] * np.ones(O)
    truth = np.full((len(rows), O), np.nan)
    known = rows < N
    truth[known] = model.series.values[rows[known]][:, list(model.target_cols)]
    return truth
