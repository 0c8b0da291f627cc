"""The benchmark problems: sizes, specs and seeded data.

Size letters: B batch, T time steps, D input features, H hidden units, O outputs.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import handgrad as hg

TUTORIAL_SPEC = hg.Spec(activation="sigmoid", bias=False, output="last", loss="half_squared",
                        reduction="sum", truncation=None)
LARGE_SPEC = hg.Spec(activation="tanh", bias=True, output="all", loss="half_squared",
                     reduction="sum", truncation=None)
TINY_SPEC = LARGE_SPEC
MID_SPEC = hg.Spec(activation="sigmoid", bias=True, output="last", loss="half_squared",
                   reduction="sum", truncation=None)

SINE_POINTS = 200     # the tutorial's data: sin(n) for n = 0..199
WINDOW = 50           # 50 values predict the 51st
TRAIN_WINDOWS = 100   # the first 100 windows train, the rest validate


class Size(NamedTuple):
    name: str
    B: int
    T: int
    D: int
    H: int
    O: int
    spec: hg.Spec           # truncation None here; the benchmark sets it
    tutorial_input: bool    # the tutorial's one-hot position input (D = T) from the sine windows


class Problem(NamedTuple):
    params: hg.Params
    xs: np.ndarray   # (B, T, D)
    ys: np.ndarray   # (B, O) for output="last", (B, T, O) for "all"


TUTORIAL = Size("tutorial", 1, WINDOW, WINDOW, 100, 1, TUTORIAL_SPEC, True)
TINY = Size("tiny", 1, 8, 3, 4, 2, TINY_SPEC, False)
LARGE = Size("large", 64, 200, 16, 256, 16, LARGE_SPEC, False)
MID = Size("B=100", 100, WINDOW, WINDOW, 100, 1, MID_SPEC, False)         # many-to-one
LARGE_QUICK = Size("large-quick", 8, 20, 16, 32, 4, LARGE_SPEC, False)   # --quick stand-in


def gated(size: Size, cell: str) -> Size:
    """`size` with the GRU or LSTM cell (biases on, PyTorch's convention)."""
    spec = hg.Spec(cell=cell, bias=True, output=size.spec.output, loss=size.spec.loss,
                   reduction=size.spec.reduction, truncation=None)
    return size._replace(name=f"{cell} {size.name}", spec=spec)


def sine_windows():
    """The tutorial's windows: values (150, T) and next values (150,), from sin(0..199)."""
    wave = np.sin(np.arange(SINE_POINTS, dtype=np.float64))
    n = SINE_POINTS - WINDOW
    idx = np.arange(n)[:, None] + np.arange(WINDOW)[None, :]
    return wave[idx], wave[WINDOW:WINDOW + n]


def one_hot_positions(values):
    """The tutorial's input: a window (N, T) becomes xs (N, T, T) with xs[:, t, t] = value_t."""
    N, T = values.shape
    xs = np.zeros((N, T, T))
    xs[:, np.arange(T), np.arange(T)] = values
    return xs


def tutorial_data():
    """(xs_train (100, T, T), ys_train (100, 1), xs_val (50, T, T), ys_val (50, 1))."""
    values, nxt = sine_windows()
    xs, ys = one_hot_positions(values), nxt[:, None]
    return xs[:TRAIN_WINDOWS], ys[:TRAIN_WINDOWS], xs[TRAIN_WINDOWS:], ys[TRAIN_WINDOWS:]


def make_problem(size: Size, seed: int) -> Problem:
    """Seeded parameters ("normal" init, so no unit saturates) and data for `size`."""
    params = hg.init_params(size.spec, size.D, size.H, size.O, seed=seed)
    if size.tutorial_input:
        xs, ys, _, _ = tutorial_data()
        return Problem(params, xs[:size.B], ys[:size.B])
    rng = np.random.default_rng(seed + 1)
    xs = rng.standard_normal((size.B, size.T, size.D))
    steps = (size.B, size.O) if size.spec.output == "last" else (size.B, size.T, size.O)
    return Problem(params, xs, rng.standard_normal(steps))
