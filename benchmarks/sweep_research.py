"""Truncation research figures: the sweep's cost against one full gradient, and the memory of
streaming truncated gradients. Run: `python -m benchmarks.sweep_research` (about a minute).

For benchmarks/run.py: `sweep_cost(...)` and `streaming_memory(...)` each return a dict.
"""
from __future__ import annotations

import json
import sys
import time
import tracemalloc

import numpy as np

SWEEP_SIZES = [                # (B, T, D, H): the tutorial task is B=100 windows, T=D=50, H=100
    (1, 50, 50, 100),
    (100, 50, 50, 100),
    (32, 100, 8, 128),
    (8, 200, 4, 64),
]
STREAM = dict(T=100_000, B=8, D=8, H=64, O=4, k=10, block=250)
REPEAT = 5


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sweep_cost(B: int = 100, T: int = 50, D: int = 50, H: int = 100, output: str = "last",
               repeat: int = REPEAT, seed: int = 0) -> dict:
    """Seconds for one full BPTT gradient and for `truncation_sweep` over every k (best of
    `repeat`), and their ratio. Sigmoid, no bias, half squared error: the tutorial's model."""
    import handgrad as hg
    spec = hg.Spec(activation="sigmoid", bias=False, output=output, loss="half_squared")
    rng = np.random.default_rng(seed)
    params = hg.init_params(spec, D, H, 1, seed=seed)
    xs = rng.normal(size=(B, T, D))
    ys = rng.normal(size=(B, 1) if output == "last" else (B, T, 1))
    full = _best(lambda: hg.loss_and_grads(params, xs, ys, spec), repeat)
    sweep = _best(lambda: hg.truncation_sweep(params, xs, ys, spec), repeat)
    return {"B": B, "T": T, "D": D, "H": H, "output": output, "full_seconds": full,
            "sweep_seconds": sweep, "ratio": sweep / full, "ks": T}


def _synthetic_blocks(T, B, D, O, block, seed):
    """Blocks made on the fly: the whole sequence never exists at once."""
    rng = np.random.default_rng(seed)
    for lo in range(0, T, block):
        n = min(block, T - lo)
        yield rng.normal(size=(B, n, D)), rng.normal(size=(B, n, O))


def streaming_memory(T: int = STREAM["T"], B: int = STREAM["B"], D: int = STREAM["D"],
                     H: int = STREAM["H"], O: int = STREAM["O"], k: int = STREAM["k"],
                     block: int = STREAM["block"], seed: int = 0) -> dict:
    """Peak traced memory of a streaming Window(k) many-to-many gradient, against the bytes that
    storing every hidden state would take (T * B * H * 8)."""
    import handgrad as hg
    from handgrad.research.streaming import streaming_loss_and_grads
    spec = hg.Spec(activation="tanh", output="all", truncation=hg.Window(k))
    params = hg.init_params(spec, D, H, O, seed=seed)
    tracemalloc.start()
    t0 = time.perf_counter()
    res = streaming_loss_and_grads(params, _synthetic_blocks(T, B, D, O, block, seed), spec)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"T": T, "B": B, "D": D, "H": H, "k": k, "block": block, "seconds": seconds,
            "peak_bytes": peak, "all_states_bytes": T * B * H * 8,
            "max_steps_held": res.max_steps_held, "loss": res.loss}


def main(argv=None) -> int:
    out = {"sweep": [sweep_cost(*size) for size in SWEEP_SIZES],
           "sweep_many_to_many": [sweep_cost(8, 50, 4, 32, output="all")],
           "streaming": streaming_memory()}
    for row in out["sweep"] + out["sweep_many_to_many"]:
        print(f"sweep {row['output']:>4} B={row['B']:>3} T={row['T']:>3} D={row['D']:>3} "
              f"H={row['H']:>3}: full {1e3 * row['full_seconds']:8.2f} ms, every k "
              f"{1e3 * row['sweep_seconds']:8.2f} ms, ratio {row['ratio']:.2f}")
    s = out["streaming"]
    print(f"streaming Window({s['k']}) T={s['T']} B={s['B']} H={s['H']}: peak "
          f"{s['peak_bytes'] / 1e6:.1f} MB traced vs {s['all_states_bytes'] / 1e6:.0f} MB for all "
          f"states; {s['seconds']:.1f} s")
    if argv and argv[0] == "--json":
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
