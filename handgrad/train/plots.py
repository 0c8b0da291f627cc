"""PNG plots of training and forecasts. matplotlib is imported here only, inside the functions,
through its object API and the Agg canvas: no pyplot, no global backend switch, no display.

Every panel has both axis labels; legends sit outside the axes (they never cover data); epoch
axes have integer ticks; the time axis is the series' own (the year for sunspots) when the CSV
has one, else the row number.
"""
from __future__ import annotations

import io

import numpy as np

from .._files import write_atomic

FIGSIZE = (8.0, 6.5)   # inches; at DPI below, a PNG of some tens of kB
DPI = 80
FONT = 8


def _figure(rows: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=FIGSIZE if rows > 1 else (FIGSIZE[0], 4.0), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1)
    return fig, (axes if rows > 1 else [axes])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _legend(ax) -> None:
    """The legend to the right of the axes, outside them."""
    ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def time_axis(series, rows):
    """(times of `rows`, axis label): the series' time column if it has one, else the row."""
    rows = np.asarray(rows)
    if series.source == "sine":
        return rows, "k (the value is sin k)"
    if series.time is None:
        return rows, "row of the series"
    time = np.asarray(series.time, dtype=np.float64)
    step = time[-1] - time[-2] if len(time) > 1 else 1.0
    beyond = time[-1] + step * (rows - (len(time) - 1))       # rows after the data, extrapolated
    inside = np.clip(rows, 0, len(time) - 1)
    return np.where(rows < len(time), time[inside], beyond), series.time_name


def training_png(result, data, title: str) -> bytes:
    """Predictions against the truth on the training and validation windows (first target, data
    units), and the loss per window over the epochs (on the scaled data the model sees)."""
    from matplotlib.ticker import MaxNLocator
    fig, (ax_tr, ax_va, ax_loss) = _figure(3)
    name = data.series.columns[data.target_cols[0]]
    for ax, ev, windows, label in ((ax_tr, result.train, data.train, "training windows"),
                                   (ax_va, result.val, data.val, "validation windows")):
        x, xlabel = time_axis(data.series, windows.rows)
        ax.plot(x, ev.truth[:, 0], color="tab:red", lw=1.2, label="truth")
        ax.plot(x, ev.preds[:, 0], color="tab:green", lw=1.2, ls="--", label="prediction")
        ax.set_title(f"{label}: next-value prediction, RMSE {ev.rmse:.4g} (data units)",
                     fontsize=9)
        ax.set_xlabel(xlabel, fontsize=FONT)
        ax.set_ylabel(f"{name} (data units)", fontsize=FONT)
        _legend(ax)
        ax.tick_params(labelsize=FONT)
    epochs = [h.epoch for h in result.history]
    ax_loss.semilogy(epochs, [max(h.train_loss, 1e-300) for h in result.history],
                     marker=".", label="training")
    ax_loss.semilogy(epochs, [max(h.val_loss, 1e-300) for h in result.history],
                     marker=".", label="validation")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_title("loss per window, on the scaled data the model sees", fontsize=9)
    ax_loss.set_xlabel("epoch (0 = initialisation)", fontsize=FONT)
    ax_loss.set_ylabel("1/2 squared error (scaled)", fontsize=FONT)
    _legend(ax_loss)
    ax_loss.tick_params(labelsize=FONT)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def plot_training(path: str, result, data, title: str) -> None:
    """`training_png` written atomically to `path`."""
    png = training_png(result, data, title)
    write_atomic(path, lambda fh: fh.write(png))


def forecast_png(series, rows, forecast, truth, context_rows, context, name: str,
                 title: str) -> bytes:
    """A forecast (data units) after its context, against the truth where it is known.

    rows (S,) forecast rows, forecast (S,), truth (S,) with NaN where unknown; context_rows (T,),
    context (T,).
    """
    fig, (ax,) = _figure(1)
    xc, xlabel = time_axis(series, context_rows)
    xf, _ = time_axis(series, rows)
    ax.plot(xc, context, color="tab:gray", lw=1.2, label="context (given)")
    known = ~np.isnan(truth)
    if known.any():
        ax.plot(xf[known], truth[known], color="tab:red", lw=1.2, label="truth")
    ax.plot(xf, forecast, color="tab:green", lw=1.4, ls="--", marker=".", ms=3,
            label="forecast (fed its\nown predictions)")
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(f"{name} (data units)", fontsize=FONT)
    _legend(ax)
    ax.tick_params(labelsize=FONT)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def plot_forecast(path: str, series, rows, forecast, truth, context_rows, context, name: str,
                  title: str) -> None:
    """`forecast_png` written atomically to `path`."""
    png = forecast_png(series, rows, forecast, truth, context_rows, context, name, title)
    write_atomic(path, lambda fh: fh.write(png))
