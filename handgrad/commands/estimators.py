"""`handgrad estimators`: truncation, ARTBP, UORO, SnAp and RTRL against the exact gradient.

With no arguments: the tutorial's task (its model at initialisation, on the first 8 training
windows) and delayed recall (y_t = x_{t-6}, H = 16 tanh, 8 streams of T = 200) at initialisation
and after online RTRL training; for each estimator the relative bias, the noise over 32 seeds,
the cosine, the time per step and the peak memory; UORO's noise against T; and online training
on delayed recall with every scheme (loss curves: a truncation shorter than the delay does not
learn it, the unbiased and exact methods do). Writes estimators.csv, estimators.json and
estimators.png into --out and prints the table. `--long T` also profiles the gradient's decay
and the truncation bias on one sequence of T steps in bounded memory (long.json, long.png).
"""
from __future__ import annotations

import argparse
import os
import time

from .._files import RunFolder
from ._types import checked_names, float_between, int_at_least

HELP = ("gradient estimators (Window, Chunks, ARTBP, UORO, SnAp-1/2, RTRL) against the exact "
        "gradient: bias, variance, cost, online training; plot, CSV and JSON")


def _estimators(text):
    from ..research.estimators import parse_estimator
    names = [t.strip() for t in text.split(",") if t.strip()]
    # tbptt:K1,K2 contains a comma: glue a lone number back onto the name before it
    merged = []
    for n in names:
        if n.isdigit() and merged and merged[-1].startswith("tbptt:"):
            merged[-1] += "," + n
        else:
            merged.append(n)
    return checked_names(merged, parse_estimator, f"estimators, got {text!r}")


def _lengths(text):
    try:
        vals = tuple(int(t) for t in text.split(","))
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths T >= 1, got {text!r}")
    return vals


def add_arguments(parser):
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default runs/estimators-<timestamp>/)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--seeds", type=int_at_least(2), default=32,
                        help="estimates per stochastic estimator (default 32)")
    parser.add_argument("--windows", type=int_at_least(1), default=8,
                        help="tutorial task: training windows used (default 8, of 100)")
    parser.add_argument("--delay", type=int_at_least(2), default=6,
                        help="recall task: y_t = x_{t-delay} (default 6)")
    parser.add_argument("--k", type=int_at_least(0), default=2,
                        help="the short truncation, Window(k) and Chunks(k + 1); k < delay "
                             "(default 2)")
    parser.add_argument("--hidden", type=int_at_least(1), default=16,
                        help="recall task: hidden units (default 16)")
    parser.add_argument("--steps", type=int_at_least(100), default=20_000,
                        help="online training steps per scheme (default 20000)")
    parser.add_argument("--lr", type=float_between(0.0), default=1e-3,
                        help="online training: Adam learning rate (default 0.001)")
    parser.add_argument("--estimators", type=_estimators, default=None,
                        help="comma-separated estimators for both tasks: bptt, window:K, chunks:K, "
                             "tbptt:K1,K2, artbp:C, uoro, snap:N, rtrl (default: bptt, two windows, "
                             "two chunk lengths, artbp:0.1, uoro, snap:1, snap:2, rtrl)")
    parser.add_argument("--noise-T", type=_lengths, default=(10, 30, 100, 300, 1000),
                        metavar="T1,T2,...", help="sequence lengths of UORO's noise curve "
                        "(default 10,30,100,300,1000)")
    parser.add_argument("--no-train", action="store_true",
                        help="skip the online training (and the trained recall model)")
    parser.add_argument("--long", type=int_at_least(0), default=0, metavar="T",
                        help="also profile one sequence of T steps in bounded memory (e.g. "
                             "1000000; tens of seconds): long.json, long.png")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of everything")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNGs")


def run(args):
    from ..research.estimators import format_rows
    from ..research.online_study import (StudyConfig, online_summary, plot_study, run_study,
                                         study_json)
    from ..research.study import to_csv, to_json
    if args.k >= args.delay:
        raise ValueError(f"--k must be below --delay (a truncation shorter than the dependency), "
                         f"got k = {args.k}, delay = {args.delay}")
    out = args.out or os.path.join("runs", time.strftime("estimators-%Y%m%d-%H%M%S"))
    names = ["estimators.csv", "estimators.json"] + ([] if args.no_plot else ["estimators.png"])
    if args.long:
        names += ["long.json"] + ([] if args.no_plot else ["long.png"])
    every = ["estimators.*", "long.*"]             # what an earlier run of this command wrote
    with RunFolder(out, names, args.force, every) as folder:   # published whole at the end
        t0 = time.perf_counter()
        config = StudyConfig(windows=args.windows, seeds=args.seeds, hidden=args.hidden,
                             delay=args.delay, k=args.k, steps=args.steps, lr=args.lr,
                             seed=args.seed, noise_Ts=args.noise_T, estimators=args.estimators)
        study = run_study(config, train=not args.no_train)
        report = study_json(study, config)
        folder.write_bytes("estimators.csv", to_csv([r._asdict() for r in study.rows]))
        if not args.no_plot:
            folder.write_bytes("estimators.png", plot_study(study, config))
        print(format_rows(study.rows))
        if study.runs:
            print(online_summary(study.runs))
        if args.long:
            from ..research.longseq import long_demo, plot_long
            prof = long_demo(args.long, seed=args.seed)
            folder.write_bytes("long.json", to_json(prof.as_dict()))
            if not args.no_plot:
                folder.write_bytes("long.png", plot_long(prof))
            print(prof.summary())
            report["long"] = {"T": args.long, "seconds": prof.seconds}
        report["seconds"]["total"] = time.perf_counter() - t0
        folder.write_bytes("estimators.json", to_json(report))
    print(f"wrote {', '.join(names)} into {out}/ ({report['seconds']['total']:.1f} s)")
    return 0
