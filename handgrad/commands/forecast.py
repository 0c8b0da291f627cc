"""`handgrad forecast MODEL --steps N`: roll a trained model forward on its own predictions."""
from __future__ import annotations

import argparse
import os

import numpy as np

from .._files import refuse_existing
from ._types import int_at_least

HELP = ("forecast N steps ahead with a model from `handgrad train`, feeding it its own "
        "predictions; prints the values and plots them against the truth where known")


def _start(text):
    if text.strip().lower() == "end":
        return "end"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row number or 'end', got {text!r}") from None
    return value


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="model.npz written by `handgrad train`")
    p.add_argument("--steps", type=int_at_least(1), default=30, metavar="N",
                   help="values to forecast (default 30)")
    p.add_argument("--start", type=_start, metavar="ROW",
                   help="row of the first forecast value; the window before it is given "
                        "(default: the first validation row, so the truth is known; 'end': "
                        "after the last row of the data)")
    p.add_argument("--plot", metavar="FILE",
                   help="PNG to write (default: forecast.png beside MODEL, or forecast-2.png, "
                        "... if that exists)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def forecast_cost(model, steps: int) -> tuple[float, float]:
    """(bytes, seconds) at least, for `steps` steps of `model` (handgrad._budget)."""
    from .._budget import CALL_SECONDS, FLOAT, FLOPS, STEP_SECONDS, rnn_sizes
    D, H, O = model.params.sizes
    N, C = model.series.values.shape
    T = model.window
    P = rnn_sizes(D, H, O)
    nbytes = FLOAT * ((T + steps) * C + 4 * steps * O + T * (D + H))
    seconds = steps * (CALL_SECONDS + STEP_SECONDS * T + 2.0 * P * T / FLOPS)
    return float(nbytes), seconds


def _when(series, row: int) -> str:
    """'row 150', or 'YEAR 2009 (row 309)' when the series has a time axis."""
    from ..train.plots import time_axis
    if series.time is None:
        return f"row {row}"
    t, name = time_axis(series, [row])
    return f"{name} {t[0]:g} (row {row})"


def run(args):
    from .._budget import check
    from .._files import free_name, write_bytes_atomic
    from ..train.forecast import forecast
    from ..train.model import load_model
    from ..train.plots import forecast_png

    if not os.path.isfile(args.model):
        raise ValueError(f"MODEL {args.model!r} is not a file")
    if args.plot is not None:
        refuse_existing([args.plot], args.force)
    model = load_model(args.model)
    check(f"a forecast of {args.steps} steps", *forecast_cost(model, args.steps),
          {"--steps": (args.steps, 30)})
    start = len(model.series.values) if args.start == "end" else args.start
    with np.errstate(over="ignore", invalid="ignore"):     # a diverged model prints inf
        fc = forecast(model, args.steps, start)
    names = [model.series.columns[j] for j in model.target_cols]
    png = forecast_png(model.series, fc.rows, fc.values[:, 0], fc.truth[:, 0], fc.context_rows,
                       fc.context[:, 0], names[0],
                       f"{len(fc.rows)}-step forecast from {_when(model.series, fc.rows[0])}")
    path = args.plot
    if path is None:
        path = os.path.join(os.path.dirname(args.model), "forecast.png")
        path = path if args.force else str(free_name(path))
    write_bytes_atomic(path, png, exclusive=not args.force)   # before printing: `| head` is safe
    print(f"forecast of {', '.join(names)} from row {fc.rows[0]}, {len(fc.rows)} steps, each "
          f"fed back as input (window of {model.window} rows before row {fc.rows[0]} given)")
    header = "row  " + "  ".join(f"{n + ' forecast':>16} {n + ' truth':>14}" for n in names)
    print(header)
    for r, v, t in zip(fc.rows, fc.values, fc.truth):
        cells = "  ".join(f"{vi:16.6g} {'' if np.isnan(ti) else f'{ti:.6g}':>14}"
                          for vi, ti in zip(v, t))
        print(f"{r:<4d} {cells}")
    known = ~np.isnan(fc.truth[:, 0])
    if known.any():
        err = fc.values[known] - fc.truth[known]
        with np.errstate(over="ignore"):
            rmse = float(np.sqrt(np.mean(err ** 2)))
        first = [int(k) for k in (1, 5, 10, 20) if k <= known.sum()]
        by = ", ".join(f"{k} ahead {abs(err[k - 1, 0]):.3g}" for k in first)
        print(f"RMSE against the truth over {int(known.sum())} known step(s): {rmse:.4g} "
              f"(absolute error {by})")
    else:
        print("no truth is known for these rows (they lie after the end of the data)")
    print(f"wrote {path}")
    return 0
