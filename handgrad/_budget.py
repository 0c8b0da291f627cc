"""Fail fast on requests that cannot fit: the memory and time a command needs, estimated from its
sizes before any work, against the memory available and a time limit.

Size letters: B batch (windows per update), T time steps, D inputs, H hidden units, O outputs,
N windows.

The estimates are lower bounds (float64 arrays the computation must hold; floating-point work at
an optimistic FLOPS, plus an optimistic Python cost per time step), so what is refused surely does
not fit; what passes may still be slow. Limits:

- memory: MEMORY_FRACTION of the memory the system reports available (MemAvailable);
- time: MAX_HOURS hours; the environment variable HANDGRAD_MAX_HOURS changes it.

`check(what, nbytes, seconds, options)` raises one ValueError naming the option that drives the
request (the one furthest above its default) when either is exceeded.
"""
from __future__ import annotations

import math
import os

MEMORY_FRACTION = 0.8
MAX_HOURS = 1.0
ENV_HOURS = "HANDGRAD_MAX_HOURS"
FLOPS = 1e11             # optimistic: the 2-core test machine's BLAS reaches ~6e9 here
STEP_SECONDS = 2e-6      # optimistic Python cost per time step of a forward pass (measured 13e-6)
CALL_SECONDS = 2e-5     # optimistic Python cost of one call of a model (measured ~6e-5)
FLOAT = 8                # bytes per float64


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else physical memory; else 2**40)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def max_seconds() -> float:
    text = os.environ.get(ENV_HOURS)
    if text is None or not text.strip():
        return MAX_HOURS * 3600
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not hours > 0:                        # inf allowed: no time limit
        raise ValueError(f"{ENV_HOURS} must be a positive number of hours, got {text!r}")
    return hours * 3600


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n < 1e6 * scale else f"{n / scale:.1e} {unit}"
    return f"{n / 1024:.3g} KiB"


def _duration(s: float) -> str:
    for unit, scale in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}" if s < 1e6 * scale else f"{s / scale:.1e} {unit}"
    return f"{s:.3g} s"


def _culprit(options: dict) -> str:
    """'--name VALUE' of the option furthest above its default: options maps '--name' to
    (value, default)."""
    name, (value, _) = max(options.items(), key=lambda kv: float(kv[1][0]) / max(kv[1][1], 1))
    return f"{name} {value}"


def check(what: str, nbytes: float, seconds: float, options: dict) -> None:
    """ValueError if `what` needs more memory than is available or more time than the limit."""
    memory = available_memory() * MEMORY_FRACTION
    if nbytes > memory:
        raise ValueError(f"{_culprit(options)}: {what} needs at least {_size(nbytes)} of memory, "
                         f"more than the {_size(memory)} available; choose a smaller size")
    limit = max_seconds()
    if seconds > limit:
        raise ValueError(f"{_culprit(options)}: {what} needs at least {_duration(seconds)} "
                         f"(estimated), more than the limit of {_duration(limit)}; choose a "
                         f"smaller size (or raise the limit with {ENV_HOURS}=N)")


def rnn_sizes(D: int, H: int, O: int) -> int:
    """Parameters of an Elman RNN (with biases): H*D + H*H + O*H + H + O."""
    return H * D + H * H + O * H + H + O


def training_cost(n_train: int, n_val: int, T: int, D: int, H: int, O: int, batch: int,
                  epochs: int, gates: int = 1) -> tuple[float, float]:
    """(bytes, seconds) at least, to train on n_train windows (B = batch per update) for
    `epochs` epochs, evaluating all windows after each (gates: 1 Elman, 3 GRU, 4 LSTM)."""
    n = n_train + n_val
    P = gates * rnn_sizes(D, H, O)
    nbytes = FLOAT * (6 * P                          # params, grads, optimiser state, copies
                      + n * (T * D + 1)              # the windows
                      + n * T * H                    # hidden states when evaluating them all
                      + 4 * min(batch, n_train) * T * H)   # one update's BPTT
    updates = epochs * -(-n_train // batch)
    flops = 2.0 * P * T * (epochs * (n_train + 2 * n) + n)   # forward passes alone
    seconds = flops / FLOPS + STEP_SECONDS * T * (updates + 2 * epochs + 2)
    return float(nbytes), seconds


def case_cost(B: int, T: int, D: int, H: int, O: int, gates: int = 1) -> tuple[float, float]:
    """(bytes, seconds) at least, to draw a case and compute its reference gradients (gates: G,
    the gate blocks of the cell: 1 Elman, 3 GRU, 4 LSTM)."""
    P = gates * rnn_sizes(D, H, O)
    nbytes = FLOAT * (3 * P + B * T * (D + O) + 4 * gates * B * T * H + 2 * B * H)
    seconds = 6.0 * B * T * P / FLOPS + 2 * STEP_SECONDS * T
    return float(nbytes), seconds
