"""Run a candidate on one case with a time limit, and tell nondeterminism from a wrong answer.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

`limited(candidate, timeout)` wraps a candidate so that a call taking longer than `timeout`
seconds raises `CandidateTimeout`. On the main thread of a POSIX process (where nothing else
holds the interval timer) the limit is SIGALRM via `setitimer`: the candidate is interrupted
where it hangs (a `time.sleep`, a lock, a Python loop) and nothing keeps running. Elsewhere the
candidate runs in a daemon thread and is abandoned when it times out (Python cannot kill a
thread: a spinning one keeps its CPU until it returns).

`CandidateStopped` (a BaseException, like KeyboardInterrupt, so that neither a candidate's own
`except Exception` nor Hypothesis's shrinker catches it) ends a search at once: a hang is not
shrunk (each shrink step would wait for the timeout again). `run` turns it into a `Failure`.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

import numpy as np

from ..tolerances import rel_error
from .evaluate import Answer, Failure, call_candidate

DEFAULT_TIMEOUT = 60.0        # seconds per call; generous for a first jit compilation


class CandidateStopped(BaseException):
    """The candidate could not finish the call: `kind` ("timeout", "raised", "bad_output")
    and one line of `detail`, as in `evaluate.Failure`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class CandidateTimeout(CandidateStopped):
    def __init__(self, seconds: float):
        super().__init__("timeout", f"the candidate did not return within {seconds:g} s "
                         "(timeout=); it was stopped")


def limited(candidate, timeout: Optional[float]):
    """`candidate` with a time limit per call (None: no limit)."""
    if timeout is None:
        return candidate

    def call(*args):
        if _can_use_alarm():
            return _with_alarm(candidate, args, timeout)
        return _with_thread(candidate, args, timeout)

    call.__name__ = getattr(candidate, "__name__", "candidate")
    call.__wrapped__ = candidate
    return call


def _can_use_alarm() -> bool:
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0.0)


def _with_alarm(candidate, args, timeout):
    def on_alarm(signum, frame):
        raise CandidateTimeout(timeout)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        return candidate(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_thread(candidate, args, timeout):
    box = {}

    def target():
        try:
            box["out"] = candidate(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["exc"] = exc
    worker = threading.Thread(target=target, daemon=True, name="handgrad-candidate")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise CandidateTimeout(timeout)
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def run(candidate, case):
    """call_candidate with a `limited` candidate: an Answer, or a Failure (kind "timeout"
    included)."""
    try:
        return call_candidate(candidate, case)
    except CandidateStopped as stop:
        return Failure(stop.kind, stop.detail)


def disagreement(first: Answer, second: Answer, rtol: float) -> Optional[str]:
    """None when two answers on the same case agree within rtol; else a phrase naming the
    quantity that changed and by how much."""
    pairs = [("loss", first.loss, second.loss)]
    pairs += [(n, first.grads[n], second.grads.get(n)) for n in first.grads]
    worst = None
    for name, a, b in pairs:
        if b is None:
            return f"{name} was returned once and not the second time"
        err = rel_error(np.asarray(b), np.asarray(a))
        if not err <= rtol and (worst is None or err > worst[1]):
            worst = (name, err)
    if set(second.grads) - set(first.grads):
        return "a gradient was returned the second time and not the first"
    if worst is None:
        return None
    return f"{worst[0]} changed by {worst[1]:.1e} (relative) between the two calls"


def accumulated(first: Answer, second: Answer, expected, rtols: dict) -> tuple:
    """The names of the gradients that grew by the expected gradient between two calls on the
    same case (a candidate that adds into gradient buffers it never clears, such as a PyTorch
    module whose .grad is not zeroed), or () when the calls differ otherwise.

    second - first is the gradient of the second call, computed in floating point from two
    accumulated sums: it differs from the expected gradient by the candidate's own error
    (rtol * max|expected|) plus the rounding of the two sums (eps * (max|first| + max|second|))."""
    grown = []
    for name, e in expected.grads.items():
        if name not in first.grads or name not in second.grads:
            continue
        a, b = np.asarray(first.grads[name]), np.asarray(second.grads[name])
        if np.array_equal(a, b):
            continue
        e = np.asarray(e, dtype=np.float64)
        eps = float(np.finfo(first.dtype_of(name)).eps)
        bound = (rtols.get(name, 0.0) * float(np.max(np.abs(e), initial=0.0))
                 + eps * (float(np.max(np.abs(a), initial=0.0))
                          + float(np.max(np.abs(b), initial=0.0))))
        if not float(np.max(np.abs((b - a) - e), initial=0.0)) <= bound:
            return ()
        grown.append(name)
    return tuple(grown)


ACCUMULATED = ("{names} grew by exactly the expected gradient between the two calls: the "
               "gradients accumulate across calls (PyTorch: clear them before each backward, "
               "model.zero_grad() or optimizer.zero_grad(); your own buffers: reset them to "
               "zero)")

NONDETERMINISTIC = "nondeterministic: two calls on the same case returned different gradients"
