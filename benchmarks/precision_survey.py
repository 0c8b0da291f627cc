"""The oracle's precision model, measured: how close correct candidates come to being flagged,
and how small a wrong factor is caught (the figures of docs/tolerances.md).

    PYTHONPATH=$PWD python -m benchmarks.precision_survey [--cases 2000] [--seed 0]
    PYTHONPATH=$PWD python -m benchmarks.precision_survey --long [--seed 1]

For each random case (every cell, spec, truncation and weight scale, sizes up to those of
hg.check):
  - correct candidates (`gallery.roundoff.roundoff_rnn` for the Elman cell,
    `gallery.roundoff_gated.roundoff_gated` for the GRU (PyTorch's n + z (h - n), or
    (1 - z) n + z h with 1 - z by a subtraction) and the LSTM): float64 and float32, with
    activations up to TOLERANCES["ulps"] ulps off in random directions or all in one direction
    (coherent, like a biased library tanh); their worst normwise relative error per array, how
    many needed the round-off floor (error > rtol), how many were flagged, and their worst
    ratio difference / allowed (must stay below 1; 1 / it is the margin), also against the
    probabilistic bound alone;
  - the resolution: per array, the smallest relative error that is flagged on that case,
    max(rtol, floor / max|expected|), over the well-conditioned scales ("small", "moderate").

`--long`: the sizes where the worst-case bound says nothing, (16, 50, 8, 64, 8) and
(64, 200, 16, 256, 16), every cell, small and moderate weights: floor / max|expected|, the
correct candidates' errors and whether a factor 1 + 1e-9 (float64) / 1 + 1e-4 (float32) on each
answer is flagged, and what the floor costs.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from handgrad.gallery.roundoff import roundoff_rnn
from handgrad.gallery.roundoff_gated import roundoff_gated
from handgrad.oracle.conditioning import roundoff_bounds, roundoff_floor
from handgrad.oracle.evaluate import ORDER, call_candidate, compare, expected_answer
from handgrad.spec import LOSSES, OUTPUTS, REDUCTIONS, TBPTT, Chunks, Spec, Window
from handgrad.strategies import WEIGHT_SCALES, make_case
from handgrad.tolerances import tolerance_for

MAX_SIZES = (3, 6, 3, 4, 3)      # hg.check's defaults: max_B, max_T, max_D, max_H, max_O
LONG_SIZES = ((16, 50, 8, 64, 8), (64, 200, 16, 256, 16))
KINDS = {"float64": dict(dtype=np.float64),
         "float64 coherent": dict(dtype=np.float64, coherent=True),
         "float32": dict(dtype=np.float32),
         "float32 coherent": dict(dtype=np.float32, coherent=True)}


def random_spec(rng, T: int) -> Spec:
    k = int(rng.integers(0, T + 2))
    truncation = [None, Window(k), Chunks(max(k, 1)), TBPTT(max(k, 1), max(k, 1) + 1)][
        int(rng.integers(4))]
    cell = str(rng.choice(["elman", "gru", "lstm"]))
    options = dict(bias=bool(rng.integers(2)), output=str(rng.choice(OUTPUTS)),
                   loss=str(rng.choice(LOSSES)), reduction=str(rng.choice(REDUCTIONS)),
                   truncation=truncation, cell=cell)
    if cell == "elman":
        options["activation"] = str(rng.choice(["tanh", "sigmoid"]))
    else:
        options["head"] = bool(rng.integers(4))          # without a head one time in four
    if cell == "gru":
        options["gru_reset"] = str(rng.choice(["after", "before"]))
    return Spec(**options)


def random_case(rng, max_sizes=MAX_SIZES):
    T = int(rng.integers(1, max_sizes[1] + 1))
    spec = random_spec(rng, T)
    B, D, H, O = (int(rng.integers(1, m + 1)) for m in (max_sizes[0], *max_sizes[2:]))
    scale = str(rng.choice(list(WEIGHT_SCALES)))
    return make_case(spec, B, T, D, H, O, scale=scale, seed=int(rng.integers(2**31)),
                     with_h0=bool(rng.integers(2)))


def correct(spec, rng=None, **options):
    """A correct candidate of the gallery for `spec` (the GRU's step form drawn by `rng`)."""
    if spec.cell == "elman":
        return roundoff_rnn(spec, **options)
    keep = spec.cell == "gru" and rng is not None and bool(rng.integers(2))
    return roundoff_gated(spec, keep_form=keep, **options)


def _scale(expected, name) -> float:
    return (abs(expected.loss) if name == "loss"
            else float(np.max(np.abs(expected.grads[name]), initial=0.0)))


def _diff(got, expected, name) -> float:
    return (abs(got.loss - expected.loss) if name == "loss"
            else float(np.max(np.abs(got.grads[name] - expected.grads[name]), initial=0.0)))


def _ratio(diff, bound) -> float:
    return diff / bound if bound > 0 else (0.0 if diff == 0 else np.inf)


def survey(n_cases: int, seed: int, max_sizes=MAX_SIZES) -> dict:
    rng = np.random.default_rng(seed)
    worst = {k: {} for k in KINDS}          # kind -> name -> worst relative error
    ratio = {k: (0.0, None) for k in KINDS}     # worst difference / allowed, where
    prob_ratio = {k: (0.0, None) for k in KINDS}   # worst difference / probabilistic bound
    floored = {k: 0 for k in KINDS}
    flagged = {k: 0 for k in KINDS}
    resolution = {d: {n: [] for n in ORDER} for d in ("float64", "float32")}
    cells = {}
    for _ in range(n_cases):
        case = random_case(rng, max_sizes)
        cells[case.spec.cell] = cells.get(case.spec.cell, 0) + 1
        exp = expected_answer(case)
        bounds = {d: roundoff_bounds(case, d) for d in ("float64", "float32")}
        floors = {d: roundoff_floor(case, d) for d in ("float64", "float32")}
        for kind, options in KINDS.items():
            got = call_candidate(correct(case.spec, rng, **options), case)
            cmp = compare(got, exp, None, case)
            d = "float32" if "32" in kind else "float64"
            flagged[kind] += bool(cmp.failing)
            floored[kind] += any(e > cmp.rtols[n] for n, e in cmp.errors.items())
            where = (case.spec, case.scale, case.sizes)
            for n, e in cmp.errors.items():
                worst[kind][n] = max(worst[kind].get(n, 0.0), e)
                diff = _diff(got, exp, n)
                r = _ratio(diff, max(tolerance_for(d) * _scale(exp, n), floors[d][n]))
                if r > ratio[kind][0]:
                    ratio[kind] = (r, (n, *where))
                r = _ratio(diff, bounds[d][1][n])
                if r > prob_ratio[kind][0]:
                    prob_ratio[kind] = (r, (n, *where))
        if case.scale in ("small", "moderate"):
            for d in ("float64", "float32"):
                for n in ORDER:
                    if n == "loss" or n in exp.grads and n in floors[d]:
                        scale = _scale(exp, n)
                        if scale > 0:
                            resolution[d][n].append(max(tolerance_for(d), floors[d][n] / scale))
    return dict(worst=worst, ratio=ratio, prob_ratio=prob_ratio, floored=floored,
                flagged=flagged, resolution=resolution, cells=cells)


def long_sequences(seed: int, sizes=LONG_SIZES):
    """Print, per size, cell and weight scale: the floor's cost and size, the correct
    candidates' errors, and which wrong factors are flagged (a wrong answer is the correct
    candidate's answer times the factor: flagged when its difference exceeds rtol and the floor,
    as `compare` decides)."""
    for size in sizes:
        for cell in ("elman", "gru", "lstm"):
            spec = Spec(cell=cell)
            for scale in ("small", "moderate"):
                case = make_case(spec, *size, scale=scale, seed=seed)
                exp = expected_answer(case)
                for d, factor in (("float64", 1 + 1e-9), ("float32", 1 + 1e-4)):
                    start = time.process_time()
                    floor = roundoff_floor(case, d)          # what `compare` pays
                    seconds = time.process_time() - start
                    worst, _ = roundoff_bounds(case, d)
                    got = call_candidate(correct(spec, dtype=np.dtype(d), coherent=True), case)
                    names = [n for n in floor if (n == "loss" or n in got.grads)
                             and _scale(exp, n) > 0]
                    rel = {n: floor[n] / _scale(exp, n) for n in names}
                    w_rel = max(worst[n] / _scale(exp, n) for n in names)
                    allowed = {n: max(tolerance_for(d) * _scale(exp, n), floor[n]) for n in names}
                    ratio = max(_diff(got, exp, n) / allowed[n] for n in names)
                    caught = 0
                    for n in names:
                        value = got.loss if n == "loss" else got.grads[n]
                        truth = exp.loss if n == "loss" else exp.grads[n]
                        wrong = np.max(np.abs(value * factor - truth), initial=0.0)
                        caught += bool(wrong > allowed[n])
                    worst_rel = max(rel, key=rel.get)
                    print(f"{size} {cell} {scale} {d}: floor {seconds:.1f} s CPU; floor / "
                          f"max|expected| max {rel[worst_rel]:.1e} ({worst_rel}; worst case "
                          f"alone {w_rel:.0e}); correct coherent: largest rel. error "
                          f"{max(_diff(got, exp, n) / _scale(exp, n) for n in names):.1e}, "
                          f"difference / allowed {ratio:.2f}; x{factor}: {caught} of "
                          f"{len(names)} answers flagged", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs=5, default=MAX_SIZES,
                        metavar=("B", "T", "D", "H", "O"), help="the largest sizes drawn")
    parser.add_argument("--long", action="store_true", help="the long-sequence measurements")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.long:
        long_sequences(args.seed)
        print(f"{time.perf_counter() - start:.0f} s")
        return
    out = survey(args.cases, args.seed, tuple(args.sizes))
    print(f"{args.cases} cases ({out['cells']}), sizes up to {tuple(args.sizes)}, seed "
          f"{args.seed}, {time.perf_counter() - start:.0f} s")
    for kind in KINDS:
        errs = ", ".join(f"{n} {e:.1e}" for n, e in out["worst"][kind].items())
        r, at = out["ratio"][kind]
        pr, p_at = out["prob_ratio"][kind]
        print(f"correct {kind}: worst relative errors {errs}")
        print(f"  {out['floored'][kind]} case(s) above rtol (judged by the floor), "
              f"{out['flagged'][kind]} flagged; worst difference / allowed {r:.3f} "
              f"(margin {1 / max(r, 1e-300):.1f}x) at {at}")
        print(f"  worst difference / probabilistic bound alone {pr:.3f} at {p_at}")
    for d, per in out["resolution"].items():
        parts = []
        for n, values in per.items():
            if values:
                v = np.array(values)
                parts.append(f"{n} median {np.median(v):.1e} p90 {np.percentile(v, 90):.1e} "
                             f"max {v.max():.1e}")
        print(f"smallest relative error flagged, max(rtol, floor / max|expected|), {d}, "
              "small/moderate weights: " + "; ".join(parts))


if __name__ == "__main__":
    main()
