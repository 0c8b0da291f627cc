"""`handgrad train`: the tutorial's sine-wave experiment with the exact gradient, or a CSV series.

With no arguments: sin(0..199), windows of 50 predict the 51st value, 100 training and 50
validation windows; H = 100 sigmoid units, no biases, the one-hot position input (D = T = 50),
1/2 squared error, Window(5) truncation, each gradient element clipped to [-10, 10], SGD one
window at a time: the tutorial's setting, with a learning rate and initialisation that learn.
Writes metrics.json, model.npz and plot.png into --out (default runs/<timestamp>/).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from ._types import float_between, int_at_least

HELP = ("train the tutorial's sine-wave RNN (or your CSV series) with the exact gradient; "
        "writes metrics.json, model.npz and plot.png")

# --faithful: the tutorial's own hyperparameters, everything else as the default run
FAITHFUL = {"init": "tutorial", "lr": 1e-4, "epochs": 25}
# the default run (see TrainConfig for why each value)
DEFAULTS = {"init": "normal", "lr": 0.05, "epochs": 20}


def _truncation(text):
    from ..spec import parse_truncation
    try:
        return parse_truncation(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _clip(text):
    from ..train.optim import parse_clip
    try:
        return parse_clip(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text):
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def add_arguments(p):
    task = p.add_argument_group("task (default: the tutorial's sine wave)")
    task.add_argument("--csv", metavar="FILE", help="train on this CSV file (header row, one row "
                      "per time step) instead of the sine wave; 'sunspots' and 'us_macro' name "
                      "the series shipped with handgrad, from any folder")
    task.add_argument("--columns", type=_names, metavar="A,B",
                      help="CSV columns the model reads at each step (may be omitted when the file has "
                           "one numeric column)")
    task.add_argument("--target", type=_names, metavar="A",
                      help="column(s) to predict one step ahead (default: the first of --columns)")
    task.add_argument("--window", type=int_at_least(1), metavar="T",
                      help="steps per window (default 50 for the sine task, 20 for a CSV)")
    task.add_argument("--input", choices=("position", "steps"), dest="inputs",
                      help="'position': the tutorial's one-hot position input x_t = v_t e_t "
                           "(D = T, one column only); 'steps': x_t = the row at step t (D = "
                           "columns). Default: position for the sine task, steps for a CSV")
    task.add_argument("--val-fraction", type=float_between(0.0, 1.0), default=1 / 3, metavar="F",
                      help="last fraction of the windows kept for validation (default 1/3: the "
                           "tutorial's 50 of 150)")
    task.add_argument("--scale", choices=("maxabs", "minmax", "none"), default="maxabs",
                      help="scaling fitted on the training rows: maxabs divides by max|value| "
                           "(the tutorial's max_val; default), minmax maps to [-1, 1]")
    model = p.add_argument_group("model and training")
    model.add_argument("--faithful", action="store_true",
                       help="the tutorial's own hyperparameters: uniform(0, 1) weights, lr 1e-4, "
                            "25 epochs (explicit options still override); shows why it cannot learn")
    model.add_argument("--hidden", type=int_at_least(1), default=100, metavar="H",
                       help="hidden units (default 100)")
    model.add_argument("--cell", choices=("elman", "gru", "lstm"), default="elman",
                       help="the recurrent cell (default elman, the tutorial's; gru and lstm in "
                            "PyTorch's equations)")
    model.add_argument("--activation", choices=("sigmoid", "tanh", "relu", "identity"),
                       help="the Elman cell's nonlinearity (default sigmoid, the tutorial's)")
    model.add_argument("--bias", action="store_true", help="add the biases b and c (the tutorial "
                       "has none)")
    model.add_argument("--init", choices=("normal", "orthogonal", "tutorial"),
                       help="weights: normal (LeCun, default), orthogonal W, or the tutorial's "
                            "uniform(0, 1)")
    model.add_argument("--init-scale", type=float_between(0.0, what="a positive number"),
                       default=1.0, metavar="S")
    model.add_argument("--truncation", type=_truncation, default="window:5", metavar="T",
                       help="full | window:K | chunks:K | tbptt:K1,K2 (default window:5, the "
                            "tutorial's bptt_truncate=5)")
    model.add_argument("--epochs", type=int_at_least(1), metavar="N",
                       help=f"default {DEFAULTS['epochs']}")
    model.add_argument("--lr", type=float_between(0.0, what="a positive number"), metavar="LR",
                       help=f"default {DEFAULTS['lr']}")
    model.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    model.add_argument("--batch-size", type=int_at_least(1), default=1, metavar="B",
                       help="windows per update, gradient averaged (default 1: the tutorial's)")
    model.add_argument("--clip", type=_clip, default="value:10", metavar="C",
                       help="value:L (each element to [-L, L]; default value:10), norm:L (global "
                            "norm at most L) or none")
    model.add_argument("--shuffle", action="store_true", help="visit the windows in a new random "
                       "order each epoch (default: in order, as the tutorial)")
    model.add_argument("--seed", type=int_at_least(0), default=0, help="same seed, same bits")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="output folder, created whole at the end (a new "
                     "or empty folder, or with --force an earlier run's; default "
                     "runs/<timestamp>/)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")


RUN_FILES = ("metrics.json", "model.npz", "plot.png")
REPLACEABLE = ("forecast.png", "forecast-*.png")      # what `handgrad forecast` writes beside


def load_series(args):
    """The Series the options describe (the sine wave, a CSV file, or a bundled series)."""
    from ..train.data import load_csv, resolve_csv, sine_series
    if args.csv is None:
        if args.columns or args.target:
            raise ValueError("--columns and --target need --csv FILE")
        return sine_series(200)
    series = load_csv(resolve_csv(args.csv), args.columns)
    if args.columns is None and len(series.columns) > 1:
        raise ValueError(f"{args.csv} has the numeric columns {', '.join(series.columns)}: "
                         "name the ones the model reads with --columns (and the one to "
                         "predict with --target)")
    return series


def _task_shape(args, series):
    """(window T, inputs, targets) the options describe for `series`."""
    if args.csv is None:
        return (50 if args.window is None else args.window), args.inputs or "position", None
    targets = args.target
    if targets and args.columns is not None:
        extra = [t for t in targets if t not in args.columns]
        if extra:
            raise ValueError(f"--target {','.join(extra)} must be one of --columns "
                             f"{','.join(args.columns)}")
    return (20 if args.window is None else args.window), args.inputs or "steps", targets


def check_budget(args, series, config) -> None:
    """Refuse, before building anything, a run that cannot fit in memory or the time limit."""
    from .._budget import check, training_cost
    window, inputs, targets = _task_shape(args, series)
    N, C = series.values.shape
    n_windows = max(N - window, 2)
    n_val = max(1, round(args.val_fraction * n_windows))
    D = window if inputs == "position" else C
    O = len(targets) if targets else 1
    gates = {"gru": 3, "lstm": 4}.get(getattr(config, "cell", "elman"), 1)
    nbytes, seconds = training_cost(n_windows - n_val, n_val, window, D, config.hidden, O,
                                    config.batch_size, config.epochs, gates)
    check("this training run", nbytes, seconds,
          {"--epochs": (config.epochs, 20), "--hidden": (config.hidden, 100),
           "--window": (window, 50 if args.csv is None else 20),
           "--batch-size": (config.batch_size, 10**9)})


def build_data(args, series=None):
    """The Dataset the options describe."""
    from ..train.data import build_dataset
    series = load_series(args) if series is None else series
    window, inputs, targets = _task_shape(args, series)
    return build_dataset(series, window, inputs, targets, args.val_fraction, args.scale)


def build_config(args):
    from ..train.loop import TrainConfig
    base = FAITHFUL if args.faithful else DEFAULTS
    pick = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    return TrainConfig(hidden=args.hidden, activation=args.activation, cell=args.cell,
                       bias=args.bias,
                       truncation=args.truncation, init=pick["init"], init_scale=args.init_scale,
                       lr=pick["lr"], epochs=pick["epochs"], batch_size=args.batch_size,
                       optimizer=args.optimizer, clip=args.clip, seed=args.seed,
                       shuffle=args.shuffle)


def describe_task(data) -> str:
    s = data.series
    n_tr, n_va = len(data.train.ys), len(data.val.ys)
    targets = ",".join(s.columns[j] for j in data.target_cols)
    src = "sin(0..199)" if s.source == "sine" else f"{s.source} ({len(s.values)} rows)"
    if s.time is not None:
        src += f", time axis {s.time_name} {s.time[0]:g}..{s.time[-1]:g}"
    if s.dropped:
        src += f"; not numbers, left out: {', '.join(s.dropped)}"
    inputs = (f"position input x_t = v_t e_t (D = T = {data.window})" if data.inputs == "position"
              else f"per-step input x_t = ({','.join(s.columns)}) (D = {len(s.columns)})")
    return (f"task: {src}; windows of {data.window} steps predict the next {targets}; "
            f"{n_tr} train / {n_va} validation windows (chronological); {inputs}")


def describe_model(config, data) -> str:
    clip = "none" if config.clip.kind == "none" else f"{config.clip.kind}:{config.clip.limit:g}"
    trunc = "full BPTT" if config.truncation is None else repr(config.truncation)
    unit = config.activation if config.cell == "elman" else config.cell.upper()
    return (f"model: H={config.hidden} {unit}, {'biases' if config.bias else 'no biases'}"
            f", 1/2 squared error, {trunc}; {config.optimizer} lr {config.lr:g}, batch "
            f"{config.batch_size}, clip {clip}, init {config.init}"
            f"{'' if config.init_scale == 1 else f' x{config.init_scale:g}'}, "
            f"{config.epochs} epochs, seed {config.seed}")


def _num(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def metrics_dict(result, config, data, baseline, out_files) -> dict:
    s = data.series
    return {
        "train_rmse": _num(result.train.rmse), "val_rmse": _num(result.val.rmse),
        "epochs": result.epochs_done, "seconds": round(result.seconds, 3),
        "train_loss_per_window": _num(result.history[-1].train_loss),
        "val_loss_per_window": _num(result.history[-1].val_loss),
        "persistence_val_rmse": _num(baseline), "updates": result.updates,
        "diverged": None if result.diverged is None else result.diverged._asdict(),
        "saturation_init": result.saturation_init.as_dict(),
        "saturation_final": result.saturation_final.as_dict(),
        "first_update_max_abs_grad": result.first_grad_max,
        "scale": {c: _num(float(v)) for c, v in zip(s.columns, data.scaler.scale)},
        "center": {c: _num(float(v)) for c, v in zip(s.columns, data.scaler.center)},
        "data": {"source": s.source, "columns": list(s.columns),
                 "targets": [s.columns[j] for j in data.target_cols], "inputs": data.inputs,
                 "window": data.window, "train_windows": len(data.train.ys),
                 "val_windows": len(data.val.ys)},
        "spec": result.spec.to_dict(), "config": config.as_dict(),
        "history": [h._asdict() for h in result.history], "files": out_files,
    }


def _claim(args):
    """The RunFolder of this run, claimed (refused at once if taken)."""
    from .._files import FolderBusy, RunFolder
    if args.out is not None:
        return RunFolder(args.out, RUN_FILES, args.force, REPLACEABLE).claim()
    base = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    for n in range(1, 100):
        path = base if n == 1 else f"{base}-{n}"
        if os.path.lexists(path):
            continue
        try:
            return RunFolder(path, RUN_FILES, False, ()).claim()
        except FolderBusy:                 # another run started this second: take the next
            continue
    raise ValueError(f"could not find a free output folder {base}-N; give one with --out")


def run(args):
    import numpy as np

    from ..train.loop import persistence_rmse, train
    from ..train.model import Model, write_model
    from ..train.plots import training_png

    series = load_series(args)
    config = build_config(args)
    check_budget(args, series, config)
    data = build_data(args, series)
    with _claim(args) as folder:           # published whole (one rename) when the block ends
        out = folder.out
        files = {"metrics": str(out / "metrics.json"), "model": str(out / "model.npz"),
                 "plot": str(out / "plot.png")}
        print(describe_task(data))
        print(describe_model(config, data) + (" (--faithful: the tutorial's hyperparameters)"
                                              if args.faithful else ""))
        sys.stdout.flush()
        result = train(data, config, progress=not args.quiet)

        model = Model(result.params, result.spec, data.series, data.scaler, data.inputs,
                      data.window, data.target_cols, len(data.train.ys),
                      {"config": config.as_dict()})
        folder.write("model.npz", lambda fh: write_model(fh, model))
        baseline = persistence_rmse(data, data.val)
        metrics = metrics_dict(result, config, data, baseline, files)
        folder.write_bytes("metrics.json",
                           (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
        title = ("the tutorial's sine task" if data.series.source == "sine"
                 else os.path.basename(data.series.source)) + (" (--faithful)" if args.faithful
                                                                else "")
        with np.errstate(all="ignore"):
            png = training_png(result, data, title)
        folder.write_bytes("plot.png", png)

    _report(result, data, baseline)
    print(f"wrote {files['metrics']}, {files['model']}, {files['plot']}")
    if result.diverged is not None:
        d = result.diverged
        sys.stderr.write(f"handgrad train: training diverged at epoch {d.epoch}, update {d.step}: "
                         f"{d.reason}. Stopped; the saved model is the last good one, from the end of "
                         f"epoch {result.epochs_done} (0 = initialisation). Try a smaller --lr or "
                         "--clip.\n")
        return 1
    return 0


def _report(result, data, baseline):
    units = "data units" if data.series.source != "sine" else "the data's units"
    print(f"train RMSE {result.train.rmse:.4g}   val RMSE {result.val.rmse:.4g}   ({units}; "
          f"{result.epochs_done} epochs, {result.seconds:.1f} s)")
    cols, sc = data.series.columns, data.scaler
    if not sc.center.any():
        scale = ", ".join(f"{c} {v:.6g}" for c, v in zip(cols, sc.scale))
        print(f"scale (the tutorial's max_val, stored with the model): {scale}")
    else:
        scale = ", ".join(f"{c} = {m:.6g} + {v:.6g} x scaled" for c, m, v in zip(cols, sc.center, sc.scale))
        print(f"scaling (stored with the model): {scale}")
    print(f"for comparison, 'next value = last value' gives val RMSE {baseline:.4g}")
    for when, sat in (("at initialisation", result.saturation_init),
                      ("after training", result.saturation_final)):
        if sat.saturated:
            print(f"SATURATION {when}: {sat.describe()}.")
    if result.saturation_init.saturated:
        g = result.first_grad_max
        print("exact gradient on the first window: " +
              ", ".join(f"max|d{k}| = {v:.3g}" for k, v in g.items()) +
              ". U and W get (practically) zero gradient: sigmoid'(a) = sigma(a)(1 - sigma(a)) is "
              "about e^-|a|, and these pre-activations are large.")
        print("with only V learning, the best the model can do is a constant: val RMSE about "
              "the data's standard deviation. Use the default --init normal to learn.")
    elif not result.saturation_final.saturated:
        print(f"saturation: {result.saturation_final.describe()}.")
