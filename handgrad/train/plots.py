"""PNG plots of training and forecasts. matplotlib is imported here only, inside the functions,
through its object API and the Agg canvas: no pyplot, no global backend switch, no display."""
from __future__ import annotations

import io

import numpy as np

from .model import write_atomic

FIGSIZE = (7.0, 6.0)   # inches; at DPI below, a PNG of some tens of kB
DPI = 80


def _figure(rows: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, 1)


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, lambda fh: fh.write(buf.getvalue()))


def plot_training(path: str, result, data, title: str) -> None:
    """Predictions against the truth on the training and validation windows (first target, data
    units), and the loss per window over the epochs."""
    fig, (ax_tr, ax_va, ax_loss) = _figure(3)
    name = data.series.columns[data.target_cols[0]]
    for ax, ev, windows, label in ((ax_tr, result.train, data.train, "train"),
                                   (ax_va, result.val, data.val, "validation")):
        ax.plot(windows.rows, ev.truth[:, 0], color="tab:red", lw=1.2, label="truth")
        ax.plot(windows.rows, ev.preds[:, 0], color="tab:green", lw=1.2, ls="--",
                label="prediction")
        ax.set_title(f"{label}: RMSE {ev.rmse:.4g} ({name}, data units)", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
        ax.tick_params(labelsize=8)
    epochs = [h.epoch for h in result.history]
    ax_loss.semilogy(epochs, [max(h.train_loss, 1e-300) for h in result.history], label="train")
    ax_loss.semilogy(epochs, [max(h.val_loss, 1e-300) for h in result.history], label="validation")
    ax_loss.set_xlabel("epoch (0 = initialisation)", fontsize=8)
    ax_loss.set_ylabel("1/2 sq. error per window", fontsize=8)
    ax_loss.legend(fontsize=8)
    ax_loss.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_forecast(path: str, rows, forecast, truth, context_rows, context, name: str,
                  title: str) -> None:
    """A forecast (data units) after its context, against the truth where it is known.

    rows (S,) forecast rows, forecast (S,), truth (S,) with NaN where unknown; context_rows (T,),
    context (T,).
    """
    fig, ax = _figure(1)
    ax.plot(context_rows, context, color="tab:gray", lw=1.2, label="context (given)")
    known = ~np.isnan(truth)
    if known.any():
        ax.plot(np.asarray(rows)[known], truth[known], color="tab:red", lw=1.2, label="truth")
    ax.plot(rows, forecast, color="tab:green", lw=1.4, ls="--", marker=".", ms=3,
            label="forecast (fed its own predictions)")
    ax.set_xlabel("row of the series", fontsize=8)
    ax.set_ylabel(name, fontsize=8)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10)
    _save(fig, path)
