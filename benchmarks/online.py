"""Online estimators' cost per step against one full BPTT gradient, as ratios, at H = 32, 64, 128.
Run: `python -m benchmarks.online` (about a minute; add --json for the numbers as JSON).

Each row times one gradient of the same problem (tanh, biases, a loss at every step, B = 1,
T = 50, D = 8, O = 1) by each estimator, best of REPEAT calls measured in the same run, divided by
the best BPTT call. Per step, BPTT costs O(H^2), UORO and SnAp-1 O(H Z) = O(H^2) too, RTRL (and
SnAp-2 on a dense W, which is RTRL) O(H^2 P) = O(H^4): its ratio grows like H^2, by 16x from
H = 32 to H = 128. The fitted exponent of RTRL's time against H is printed (4 in the limit).
Every call runs with one BLAS thread (on a shared 2-core machine a second thread mostly waits).
Timings on a shared machine are contended: compare ratios from one run, not across runs.
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

SIZES = (32, 64, 128)
PROBLEM = dict(B=1, T=50, D=8, O=1)
ESTIMATORS = ("window:5", "artbp:0.1", "uoro", "snap:1", "snap:2", "rtrl")
REPEAT = 3
BUDGET = 2.0                  # seconds: a slow estimator is called fewer times (at least once)


def _best(fn, repeat: int = REPEAT, budget: float = BUDGET) -> float:
    best, spent, n = math.inf, 0.0, 0
    while n < repeat and (n == 0 or spent < budget):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def cost_ratios(H: int, B: int = PROBLEM["B"], T: int = PROBLEM["T"], D: int = PROBLEM["D"],
                O: int = PROBLEM["O"], estimators=ESTIMATORS, seed: int = 0) -> dict:
    """Seconds per step of BPTT and of each estimator, and estimator / BPTT."""
    import handgrad as hg
    from handgrad.research.estimators import estimator_grads
    spec = hg.Spec(activation="tanh", output="all")
    rng = np.random.default_rng(seed)
    params = hg.init_params(spec, D, H, O, seed=seed)
    xs, ys = rng.normal(size=(B, T, D)), rng.normal(size=(B, T, O))
    bptt = _best(lambda: hg.loss_and_grads(params, xs, ys, spec))
    row = {"H": H, "P": H * (H + D + 1), "bptt_us_per_step": 1e6 * bptt / T}
    for name in estimators:
        sec = _best(lambda: estimator_grads(name, params, xs, ys, spec, rng=rng))
        row[name] = sec / bptt
        row[f"{name}_us_per_step"] = 1e6 * sec / T
    return row


def main(argv=None) -> int:
    from handgrad._threads import blas_threads
    with blas_threads(0):                 # one BLAS thread for every call: like against like
        rows = [cost_ratios(H) for H in SIZES]
    print(f"cost per step / one BPTT gradient (B={PROBLEM['B']}, T={PROBLEM['T']}, "
          f"D={PROBLEM['D']}, tanh, loss at every step; one BLAS thread; best of up to {REPEAT}):")
    print(f"  {'H':>4} {'P':>6} {'BPTT us/step':>13} " + " ".join(f"{e:>10}" for e in ESTIMATORS))
    for r in rows:
        print(f"  {r['H']:>4} {r['P']:>6} {r['bptt_us_per_step']:>13.1f} "
              + " ".join(f"{r[e]:>10.3g}" for e in ESTIMATORS))
    Hs = np.array([r["H"] for r in rows], dtype=float)
    for name in ("rtrl", "uoro", "snap:1"):
        t = np.array([r[f"{name}_us_per_step"] for r in rows])
        slope = np.polyfit(np.log(Hs), np.log(t), 1)[0]
        print(f"  {name}: time per step ~ H^{slope:.2f} over H = {SIZES}")
    if argv and argv[0] == "--json":
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
