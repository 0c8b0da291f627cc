"""The oracle's precision model, measured: how close correct candidates come to being flagged,
and how small a wrong factor is caught (the figures of docs/tolerances.md).

    PYTHONPATH=$PWD python -m benchmarks.precision_survey [--cases 2000] [--seed 0]

For each random case (every spec, truncation and weight scale, sizes up to those of hg.check):
  - correct candidates (`gallery.roundoff.roundoff_rnn`): float64 with activations up to
    TOLERANCES["ulps"] ulps off in random directions, the same all in one direction (coherent,
    like a biased library tanh), and float32; their worst normwise relative error per array,
    how many needed the round-off floor (error > rtol), and their worst ratio
    difference / allowed (must stay below 1; 1 / it is the margin);
  - the resolution: per array, the smallest relative error that is flagged on that case,
    max(rtol, floor / max|expected|), over the well-conditioned scales ("small", "moderate").
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from handgrad.gallery.roundoff import roundoff_rnn
from handgrad.oracle.conditioning import roundoff_floor
from handgrad.oracle.evaluate import ORDER, call_candidate, compare, expected_answer
from handgrad.spec import LOSSES, OUTPUTS, REDUCTIONS, TBPTT, Chunks, Spec, Window
from handgrad.strategies import WEIGHT_SCALES, make_case
from handgrad.tolerances import tolerance_for

MAX_SIZES = (3, 6, 3, 4, 3)      # hg.check's defaults: max_B, max_T, max_D, max_H, max_O


def random_case(rng, max_sizes=MAX_SIZES):
    T = int(rng.integers(1, max_sizes[1] + 1))
    k = int(rng.integers(0, T + 2))
    truncation = [None, Window(k), Chunks(max(k, 1)), TBPTT(max(k, 1), max(k, 1) + 1)][
        int(rng.integers(4))]
    spec = Spec(activation=str(rng.choice(["tanh", "sigmoid"])), bias=bool(rng.integers(2)),
                output=str(rng.choice(OUTPUTS)), loss=str(rng.choice(LOSSES)),
                reduction=str(rng.choice(REDUCTIONS)), truncation=truncation)
    B, D, H, O = (int(rng.integers(1, m + 1)) for m in (max_sizes[0], *max_sizes[2:]))
    scale = str(rng.choice(list(WEIGHT_SCALES)))
    return make_case(spec, B, T, D, H, O, scale=scale, seed=int(rng.integers(2**31)),
                     with_h0=bool(rng.integers(2)))


def allowed(case, expected, answer, name, floors) -> float:
    """The largest difference the oracle accepts for `name` on this case."""
    scale = (abs(expected.loss) if name == "loss"
             else float(np.max(np.abs(expected.grads[name]), initial=0.0)))
    return max(tolerance_for(answer.dtype_of(name)) * scale, floors[name])


def survey(n_cases: int, seed: int, max_sizes=MAX_SIZES) -> dict:
    rng = np.random.default_rng(seed)
    kinds = {"float64": dict(dtype=np.float64),
             "float64 coherent": dict(dtype=np.float64, coherent=True),
             "float32": dict(dtype=np.float32),
             "float32 coherent": dict(dtype=np.float32, coherent=True)}
    worst = {k: {} for k in kinds}          # kind -> name -> worst relative error
    ratio = {k: 0.0 for k in kinds}         # kind -> worst difference / allowed
    ratio_at = {k: None for k in kinds}
    floor_ratio = {k: 0.0 for k in kinds}   # kind -> worst difference / round-off floor alone
    floor_at = {k: None for k in kinds}
    floored = {k: 0 for k in kinds}
    flagged = {k: 0 for k in kinds}
    resolution = {d: {n: [] for n in ORDER} for d in ("float64", "float32")}
    for i in range(n_cases):
        case = random_case(rng, max_sizes)
        exp = expected_answer(case)
        floors = {d: roundoff_floor(case, d) for d in ("float64", "float32")}
        for kind, options in kinds.items():
            try:
                cand = roundoff_rnn(case.spec, **options)
            except ValueError:
                continue
            got = call_candidate(cand, case)
            cmp = compare(got, exp, None, case)
            d = "float32" if "32" in kind else "float64"
            flagged[kind] += bool(cmp.failing)
            floored[kind] += any(e > cmp.rtols[n] for n, e in cmp.errors.items())
            for n, e in cmp.errors.items():
                worst[kind][n] = max(worst[kind].get(n, 0.0), e)
                diff = (abs(got.loss - exp.loss) if n == "loss"
                        else float(np.max(np.abs(got.grads[n] - exp.grads[n]))))
                bound = allowed(case, exp, got, n, floors[d])
                r = diff / bound if bound > 0 else (0.0 if diff == 0 else np.inf)
                f = floors[d][n]
                rf = diff / f if f > 0 else (0.0 if diff == 0 else np.inf)
                if rf > floor_ratio[kind]:
                    floor_ratio[kind], floor_at[kind] = rf, (n, case.spec, case.scale, case.sizes)
                if r > ratio[kind]:
                    ratio[kind], ratio_at[kind] = r, (n, case.spec, case.scale, case.sizes)
        if case.scale in ("small", "moderate"):
            for d in ("float64", "float32"):
                for n in ORDER:
                    if n == "loss" or n in exp.grads and (n not in ("b", "c") or case.spec.bias):
                        scale = (abs(exp.loss) if n == "loss"
                                 else float(np.max(np.abs(exp.grads[n]), initial=0.0)))
                        if scale > 0:
                            resolution[d][n].append(max(tolerance_for(d),
                                                        floors[d][n] / scale))
    return dict(worst=worst, ratio=ratio, ratio_at=ratio_at, floor_ratio=floor_ratio,
                floor_at=floor_at, floored=floored, flagged=flagged,
                resolution=resolution)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs=5, default=MAX_SIZES,
                        metavar=("B", "T", "D", "H", "O"), help="the largest sizes drawn")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = survey(args.cases, args.seed, tuple(args.sizes))
    print(f"{args.cases} cases, sizes up to {tuple(args.sizes)}, seed {args.seed}, "
          f"{time.perf_counter() - start:.0f} s")
    for kind in out["worst"]:
        errs = ", ".join(f"{n} {e:.1e}" for n, e in out["worst"][kind].items())
        print(f"correct {kind}: worst relative errors {errs}")
        print(f"  {out['floored'][kind]} case(s) above rtol (judged by the floor), "
              f"{out['flagged'][kind]} flagged; worst difference / allowed "
              f"{out['ratio'][kind]:.3f} (margin {1 / max(out['ratio'][kind], 1e-300):.1f}x) "
              f"at {out['ratio_at'][kind]}")
        print(f"  worst difference / round-off floor alone {out['floor_ratio'][kind]:.3f} at "
              f"{out['floor_at'][kind]}")
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
