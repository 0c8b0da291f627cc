"""`handgrad check`: prove this installation's hand-derived gradients.

Over a fixed tour of the model family (every cell (Elman, GRU reset after and before, LSTM),
every Elman activation, bias or not, head or not, many-to-one and many-to-many, each loss and
reduction, full BPTT and each truncation kind, h0 given or zero, each weight scale), compares the hand BPTT's loss, gradients and dh0 with JAX autodiff (when jax is
installed), the complex step and central differences, and prints one row per spec: the worst
normwise relative error per method, the tolerance, PASS or FAIL. Exit 0 when everything agrees,
1 on any disagreement.

`handgrad check --exec 'CMD'` instead checks your own program, in any language, as `hg.check`
does a Python function: Hypothesis draws cases, CMD reads each one from the case file `{case}`
and writes its gradients to `{out}`, and a failure is shrunk and reported (`oracle.exec`).
"""
from __future__ import annotations

HELP = ("prove this installation: hand gradients vs JAX, complex step and central differences; "
        "with --exec CMD, check your own program")


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the weights and data of every case (default 0); with "
                             "--exec: another search than the default one")
    parser.add_argument("--quick", action="store_true",
                        help="the complex step only (no JAX, no central differences)")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX column")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")
    from ..oracle.exec import add_exec_arguments
    add_exec_arguments(parser)


def _spec_label(spec) -> str:
    trunc = "full" if spec.truncation is None else repr(spec.truncation)
    unit = {"elman": spec.activation, "gru": f"gru/{spec.gru_reset}", "lstm": "lstm"}[spec.cell]
    return (f"{unit:<10} {'bias' if spec.bias else 'no bias':<7} "
            f"{'head' if spec.head else 'no head':<7} {spec.output:<4} "
            f"{spec.loss:<13} {spec.reduction:<10} {trunc}")


def _table(rows, methods, notes) -> str:
    from ..tolerances import TOLERANCES
    titles = {"jax": "JAX", "complex_step": "complex step", "central": "central diff"}
    spec_w = max(len(_spec_label(r.case.spec)) for r in rows)
    head = (f"{'spec':<{spec_w}}  {'weights':<10} {'h0':<5}"
            + "".join(f" {titles[m]:>17}" for m in methods) + "  result")
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f" {a.worst:>9.1e} {'(' + a.worst_name + ')':>7}"
                        for a in (r.agreements[m] for m in methods))
        lines.append(f"{_spec_label(r.case.spec):<{spec_w}}  {r.case.scale:<10} "
                     f"{'given' if r.case.h0 is not None else 'zero':<5}{cells}  "
                     f"{'PASS' if r.ok else 'FAIL'}")
    lines.append("-" * len(head))
    lines.append(f"{'tolerance':<{spec_w + 17}}"
                 + "".join(f" {TOLERANCES[m]:>9.0e} {'':>7}" for m in methods))
    return "\n".join([*notes, "", *lines])


def _plain(value):
    """numpy scalars (np.bool_, np.float64) as the Python values JSON knows."""
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def run(args) -> int:
    import json
    import time

    from .. import checks

    if args.exec_command is not None:
        from ..oracle.exec import run_exec_check
        return run_exec_check(args)
    args.seed = 0 if args.seed is None else args.seed
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    start = time.perf_counter()
    notes = []
    if args.quick:
        methods = ["complex_step"]
    else:
        methods = list(checks.METHODS)
        if args.no_jax:
            methods.remove("jax")
            notes.append("JAX: skipped (--no-jax)")
        elif not checks.jax_available():
            methods.remove("jax")
            notes.append("JAX: not installed, column skipped (pip install 'handgrad[reference]')")
    rows = checks.run_check(seed=args.seed, methods=methods)
    seconds = time.perf_counter() - start
    failed = [r for r in rows if not r.ok]
    if args.json:
        print(json.dumps({
            "ok": not failed, "seed": args.seed, "sizes": checks.CHECK_SIZES, "methods": methods,
            "seconds": round(seconds, 3), "notes": notes,
            "rows": [{"spec": r.case.spec.to_dict(), "weights": r.case.scale,
                      "h0": r.case.h0 is not None, "ok": r.ok,
                      "methods": {m: {"worst": a.worst, "worst_array": a.worst_name,
                                      "tolerance": a.tolerance, "errors": a.errors, "ok": a.ok}
                                  for m, a in r.agreements.items()}} for r in rows],
        }, indent=2, default=_plain))
        return 1 if failed else 0
    sizes = ", ".join(f"{k}={v}" for k, v in checks.CHECK_SIZES.items())
    intro = [f"handgrad check: the hand-derived BPTT against independent methods ({sizes}, "
             f"seed {args.seed})",
             "error: worst normwise relative error max|hand - other| / max|other| over the loss, "
             "every gradient and dh0",
             "(in brackets: which array; central differences are judged on the whole gradient "
             "vector, see the README)", *notes]
    print(_table(rows, methods, intro))
    print()
    if failed:
        print(f"FAIL: {len(failed)} of {len(rows)} specs disagree ({seconds:.1f} s)")
        return 1
    print(f"PASS: all {len(rows)} specs agree with {', '.join(methods)} ({seconds:.1f} s)")
    return 0
