"""`handgrad truncation`: how much truncation biases the gradient, and what it saves.

With no arguments: the tutorial's task (sin(0..199), windows of 50, H = 100 sigmoid units, no
biases, many-to-one) at initialisation and after training as `handgrad train` does by default;
the bias of every Window(k) against full BPTT (all k from one pass), the gradient's decay with the
lag and its fitted rate, the bias bound and the adaptive k for a few tolerances, Jacobian and
saturation facts, and ARTBP's variance against cost. `--model` analyses a model written by
`handgrad train` on its training windows; `--case` a case file (`handgrad case`) of any cell
(Elman, GRU, LSTM), head or not, any loss and reduction.
Writes truncation.png, truncation.csv and truncation.json into --out; prints the table.
`--train-study` also trains the tutorial task under several truncations with the same seed and
writes study.png and study.json.
"""
from __future__ import annotations

import argparse
import os
import time

from .._files import RunFolder
from ._types import checked_names, int_at_least

HELP = ("truncation study: bias of every Window(k) against full BPTT, gradient decay and "
        "adaptive k, ARTBP variance; plot, CSV and JSON")


def _tols(text):
    try:
        vals = [float(t) for t in text.split(",")]
    except ValueError:
        vals = []
    if not vals or not all(0 < v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated tolerances in (0, 1), got {text!r}")
    return tuple(vals)


def _schemes(text):
    from ..research.study import parse_scheme
    names = [t.strip() for t in text.split(",") if t.strip()]
    return checked_names(names, parse_scheme, f"schemes, got {text!r}")


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="FILE",
                     help="a model.npz written by `handgrad train`: analyse it on its training windows")
    src.add_argument("--case", metavar="FILE",
                     help="a case file (.npz/.json, `handgrad case`): analyse its params and data")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder, created whole at the end (a new or empty folder, "
                             "or with --force an earlier study's; default "
                             "runs/truncation-<timestamp>/)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--epochs", type=int_at_least(0), default=20,
                        help="tutorial task: epochs of training for the 'trained' stage "
                             "(default 20, as `handgrad train`; 0 skips it)")
    parser.add_argument("--tol", type=_tols, default=(0.1, 0.01, 0.001),
                        help="bias tolerances for the adaptive k (default 0.1,0.01,0.001)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="initialisation seed")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--train-study", action="store_true",
                        help="also train the tutorial task under several truncations (tens of "
                             "seconds): study.png, study.json")
    parser.add_argument("--study-epochs", type=int_at_least(1), default=20,
                        help="epochs per scheme in --train-study (default 20)")
    parser.add_argument("--schemes", type=_schemes, default=None,
                        help="--train-study schemes, comma-separated: full, window:K, chunks:K, "
                             "artbp:C (default full,window:0,window:2,window:5,window:10,"
                             "chunks:10,artbp:0.1)")


def _check_budget(args) -> None:
    """Refuse, before any work, training requests that cannot fit (handgrad._budget)."""
    from .._budget import check, training_cost
    n_schemes = len(args.schemes) if args.schemes else 7
    # the tutorial task: 100 training and 50 validation windows of T = D = 50, H = 100, B = 1
    _, seconds = training_cost(100, 50, 50, 50, 100, 1, 1, args.epochs)
    nbytes, study = training_cost(100, 50, 50, 50, 100, 1, 1, args.study_epochs)
    total = seconds + (n_schemes * study if args.train_study else 0.0)
    check("this truncation study", nbytes, total,
          {"--epochs": (args.epochs, 20),
           "--study-epochs": (args.study_epochs if args.train_study else 0, 20)})


def _stages(args):
    """[(name, params, xs, ys, spec, h0)] to analyse, and a title."""
    if args.case:
        from ..casefile import read_case
        case = read_case(args.case)
        return [("case", case.params, case.xs, case.ys, case.spec, case.h0)], f"case {args.case}"
    if args.model:
        from ..train.data import make_windows
        from ..train.model import load_model
        m = load_model(args.model)
        if m.spec.output != "last":
            raise ValueError(f"{args.model}: expected a many-to-one model, got output={m.spec.output!r}")
        w = make_windows(m.scaler.transform(m.series.values), m.window, m.inputs, m.target_cols,
                         0, m.n_train)
        return [("model", m.params, w.xs, w.ys, m.spec, None)], f"model {args.model}"
    from ..params import init_params
    from ..train import TrainConfig, train, tutorial_dataset
    data = tutorial_dataset()
    config = TrainConfig(seed=args.seed, epochs=max(args.epochs, 1))
    spec = config.spec()
    xs, ys = data.train.xs, data.train.ys
    init = init_params(spec, xs.shape[2], config.hidden, ys.shape[1], seed=config.seed,
                       init=config.init, scale=config.init_scale)
    out = [("init", init, xs, ys, spec, None)]
    if args.epochs > 0:
        result = train(data, config, progress=False)
        out.append((f"trained {args.epochs} epochs", result.params, xs, ys, spec, None))
    return out, "tutorial task (sine, T = 50, H = 100 sigmoid, many-to-one)"


def run(args):
    from ..research.study import (STUDY_SCHEMES, analyse, format_table, plot_stages, plot_study,
                                  stage_summary, table_rows, to_csv, to_json, train_scheme)
    if args.train_study and (args.model or args.case):
        raise ValueError("--train-study trains the tutorial task; leave out --model and --case")
    for name in ("model", "case"):
        path = getattr(args, name)
        if path and not os.path.isfile(path):
            raise ValueError(f"--{name} {path}: no such file")
    _check_budget(args)
    out = args.out or os.path.join("runs", time.strftime("truncation-%Y%m%d-%H%M%S"))
    names = ["truncation.csv", "truncation.json"] + ([] if args.no_plot else ["truncation.png"])
    if args.train_study:
        names += ["study.json"] + ([] if args.no_plot else ["study.png"])
    every = ["truncation.csv", "truncation.json", "truncation.png", "study.json", "study.png"]
    with RunFolder(out, names, args.force, every) as folder:   # published whole at the end
        out = str(folder.out)
        t0 = time.perf_counter()
        todo, title = _stages(args)
        stages = [analyse(name, p, xs, ys, spec, h0, tols=args.tol)
                  for name, p, xs, ys, spec, h0 in todo]
        rows = [r for st in stages for r in table_rows(st)]
        B, T, D = todo[0][2].shape
        report = {"title": title, "sizes": {"B": B, "T": T, "D": D, "H": todo[0][1].sizes[1]},
                  "spec": todo[0][4].to_dict(),
                  "stages": {st.name: stage_summary(st) for st in stages}, "table": rows}
        folder.write_bytes("truncation.csv", to_csv(rows))
        if not args.no_plot:
            folder.write_bytes("truncation.png", plot_stages(stages, title))
        if args.train_study:
            from ..train import TrainConfig, tutorial_dataset
            data = tutorial_dataset()
            config = TrainConfig(seed=args.seed, epochs=args.study_epochs)
            runs = [train_scheme(data, config, s, seed=args.seed)
                    for s in (args.schemes or STUDY_SCHEMES)]
            study = {"config": config.as_dict(), "runs": [r._asdict() for r in runs]}
            folder.write_bytes("study.json", to_json(study))
            if not args.no_plot:
                folder.write_bytes("study.png", plot_study(
                    runs, "tutorial task: training under truncation (same seed)"))
            report["study"] = {r.scheme: {"final_val_loss": r.val_loss[-1],
                                          "backprop_steps": r.backprop_steps[-1]} for r in runs}
        report["seconds"] = time.perf_counter() - t0
        folder.write_bytes("truncation.json", to_json(report))
    print(format_table(stages))
    if args.train_study:
        print("training under truncation (validation loss per window after the last epoch; "
              "backpropagated steps):")
        for name, r in report["study"].items():
            print(f"  {name:<12} {r['final_val_loss']:.3g}  {r['backprop_steps']}")
    print(f"wrote {', '.join(names)} into {out}/ ({report['seconds']:.1f} s)")
    return 0
