"""`handgrad tutorial`: the tutorial's published backward pass beside the exact gradient, on the
tutorial's own data, and each of its bugs with its measured effect."""
from __future__ import annotations

import os

from ._types import int_at_least

HELP = ("diagnose the 2019 tutorial's published backward pass against the exact gradient, "
        "bug by bug, on its own sine-wave data")


def add_arguments(p):
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the weights the gradients are compared at (default 0)")
    p.add_argument("--seeds", type=int_at_least(0), default=6, metavar="N",
                   help="replicate the published training with N random seeds (default 6; "
                        "0 skips it)")
    p.add_argument("--epochs", type=int_at_least(1), default=25, metavar="N",
                   help="epochs of the replications and of the faithful run (default 25, "
                        "the tutorial's)")
    p.add_argument("--model", metavar="MODEL", help="a sine-task model.npz from `handgrad "
                   "train` to measure the published prediction code on (default: train one now)")


def _fmt(x):
    return f"{x:.3g}"


def _check_budget(args) -> None:
    """Refuse, before any work, replications that cannot fit (handgrad._budget)."""
    from .._budget import FLOAT, check, rnn_sizes, training_cost
    # the tutorial task: 100 training and 50 validation windows of T = D = 50, H = 100, B = 1;
    # the faithful run and every replicated seed train it for --epochs epochs
    nbytes, seconds = training_cost(100, 50, 50, 50, 100, 1, 1, args.epochs)
    nbytes += FLOAT * 6 * rnn_sizes(50, 100, 1) * args.seeds    # the seeds' weights, stacked
    check("this diagnosis", nbytes, seconds * (1 + args.seeds),
          {"--seeds": (args.seeds, 6), "--epochs": (args.epochs, 25)})


def run(args):
    _check_budget(args)
    from .._threads import blas_threads
    with blas_threads(0):                  # small matrices only: one BLAS thread is fastest
        return _run(args)


def _run(args):
    import numpy as np

    from ..params import init_params
    from ..spec import Spec
    from ..train.data import tutorial_dataset
    from ..train.loop import TrainConfig, train
    from ..train.model import load_model
    from ..train import tutorial as tt
    from ..tutorial_code import BUGS

    spec = Spec.tutorial()
    data = tutorial_dataset()
    T = data.window
    if args.model is not None:
        if not os.path.isfile(args.model):
            raise ValueError(f"--model {args.model!r} is not a file")
        model = load_model(args.model)
        if model.inputs != "position" or model.params.U.shape[1] != T or model.spec != spec \
                or model.series.source != "sine" or model.params.W.shape[0] != 100:
            raise ValueError(f"--model {args.model!r} must be a default `handgrad train` model of "
                             f"the sine task (position input, T = {T}, H = 100, the tutorial's spec)")
        trained = model.params
    else:
        trained = None

    tut = init_params(spec, T, 100, 1, seed=args.seed, init="tutorial")
    learn = init_params(spec, T, 100, 1, seed=args.seed, init="normal")
    print("The tutorial's published backward pass (re-implemented bug for bug in "
          "handgrad.tutorial_code) against the exact gradient (handgrad.loss_and_grads),")
    print(f"on its data: sin(0..199), {len(data.train.ys)} training windows of {T}, H = 100 "
          "sigmoid units, no biases, 1/2 squared error, bptt_truncate = 5 (Window(5)).")
    print("Gradients summed over the training windows; rel. error = max|published - exact| / "
          "max|exact|; cosine 1 = same direction.\n")
    for label, params in (("the tutorial's weights, uniform(0, 1)", tut),
                          ("weights that can learn, normal (LeCun)", learn)):
        rows, _, _ = tt.compare(params, data, spec)
        print(f"at {label}, seed {args.seed}:")
        print(f"  {'param':<6}{'max|exact|':>12}{'max|published|':>16}{'rel. error':>12}{'cosine':>9}")
        for r in rows:
            print(f"  d{r.param:<5}{r.exact_max:>12.3g}{r.published_max:>16.3g}"
                  f"{r.rel_error:>12.3g}{r.cosine:>9.3f}")
        print()

    e = tt.effects(learn, tut, data, spec)
    if trained is None:
        print("(training the default model with the exact gradient to measure bug 6 ...)")
        trained = train(data, TrainConfig(), progress=False).params
    from ..train.loop import evaluate
    right = evaluate(trained, spec, data.val, data).rmse
    wrong = tt.published_prediction_rmse(trained, data)
    faithful = train(data, TrainConfig(init="tutorial", lr=tt.LR, epochs=args.epochs, seed=args.seed),
                     progress=False)
    const = float(np.std(data.val.ys[:, 0]))

    print("Each bug of the published code, with its measured effect "
          "(at the normal weights, first window, unless said otherwise):")
    facts = {
        1: [f"the factor used, add*(1-add) of step T, ranges over [{_fmt(e.deriv_published[0])}, "
            f"{_fmt(e.deriv_published[1])}]; the true sigmoid'(a_T) = s(1-s) lies in "
            f"[{_fmt(e.deriv_true_last[0])}, {_fmt(e.deriv_true_last[1])}] and over all steps in "
            f"[{_fmt(e.deriv_true_all[0])}, {_fmt(e.deriv_true_all[1])}]",
            "repairing it alone leaves the published dU, dW, dV "
            + ("bit-identical: because of bug 2 this factor never reaches them"
               if e.deriv_repair_identical else "changed")],
        2: [("dU and dW do not depend on the target: changing y by 1 leaves them bit-identical"
             if e.target_identical else "dU and dW changed with the target (unexpected)")
            + (" (dV does change)" if e.target_dv_changes else ""),
            f"the exact dU changes by {_fmt(e.exact_u_change)} (relative) for the same change of y"],
        3: [f"reading the inner loop's own step instead changes the published dU by "
            f"{_fmt(e.own_step_change[0])} and dW by {_fmt(e.own_step_change[1])} (relative)",
            "note: the shadowed record index has no numerical effect here only because nothing "
            "reads i after the inner loop (Python's for rebinds it for the next record)",
            "because dU_i = U @ x_t is an (H, 1) column added to an (H, T) matrix, numpy "
            "broadcasting copies it into every column: all columns of dU are "
            + ("identical" if e.columns_identical else "not identical")],
        4: [f"the published dU is {_fmt(e.reset_ratio[0])}x and dW {_fmt(e.reset_ratio[1])}x "
            "larger (norm) than with the accumulators reset each step"],
        5: [f"|dV published| / |dV exact| = {_fmt(e.dv_ratio)} (T = {T}), cosine "
            f"{e.dv_cosine:.4f}: the right direction, about T times too large"],
        6: [f"a model trained with the exact gradient has val RMSE {_fmt(right)} with the right "
            f"input and {_fmt(wrong)} when predicted by the published code (U @ x, whole window)"],
        7: [f"at uniform(0, 1) weights {100 * e.sat_fraction:.0f}% of the hidden activations are "
            f"saturated and {100 * e.h_exactly_one:.0f}% of h_T entries are exactly 1.0 in float64",
            f"the exact gradients are max|dU| = {_fmt(e.exact_uw_max[0])}, max|dW| = "
            f"{_fmt(e.exact_uw_max[1])} (zero to float64 precision next to dV)",
            f"trained with the exact gradient and the tutorial's hyperparameters (lr 1e-4, "
            f"{args.epochs} epochs) the model reaches val RMSE {_fmt(faithful.val.rmse)}: a "
            f"constant (the best constant scores {_fmt(const)})"],
    }
    if args.seeds:
        rep = tt.replicate(data, list(range(args.seeds)), epochs=args.epochs)
        anti = sum(c < 0 for c in rep.correlation if c == c)
        facts[8] = [f"the published training + prediction code ({args.epochs} epochs, scale 1) "
                    f"with seeds 0..{args.seeds - 1} gives val RMSE "
                    + ", ".join(_fmt(r) for r in rep.val_rmse)
                    + f" (the tutorial reports {tt.REPORTED_RMSE}); {anti} of {args.seeds} "
                    "predict anti-correlated with the truth (correlations "
                    + ", ".join(f"{c:.2f}" for c in rep.correlation) + ")"]
    else:
        facts[8] = ["not measured (--seeds 0)"]
    for n in sorted(BUGS):
        print(f"\nBUG {n}: {BUGS[n]}.")
        for line in facts[n]:
            print(f"  {line}." if line.startswith("note: ") else f"  measured: {line}.")
    print("\nThe fix is not a patch of these lines: handgrad.loss_and_grads derives the gradient "
          "once, proven against JAX, complex step and finite differences; `handgrad train` uses it.")
    return 0
