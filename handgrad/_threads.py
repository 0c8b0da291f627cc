"""One BLAS thread for small problems.

Below about 2^20 multiply-adds per time step (batch * H * H), a BLAS thread pool gains nothing:
each (B, H) @ (H, H) product takes microseconds. On a machine whose other core is busy it loses a
lot, waiting for the second thread: the default `handgrad train` (B = 1, H = 100) took 21 s with
two BLAS threads and 5-7 s with one, on a 2-core machine shared with other jobs. On a quiet
machine the two are within noise. Training loops take the limit once around the whole run; a
single gradient call does not (entering the limit costs 15-25 us, a few percent of a small call).

The limit is process-wide while it is held (that is how BLAS libraries work): another thread of
the same program calling BLAS meanwhile also gets one thread. It is held only for the duration
of one small call.
"""
from __future__ import annotations

import contextlib

SINGLE_THREAD_WORK = 1 << 20

_controller = None


def blas_threads(work: int):
    """A context that limits BLAS to one thread when `work` (multiply-adds per step) is small.

    Uses a cached threadpoolctl controller (entering and leaving costs ~4 us; a fresh
    `threadpool_limits` rescans the loaded libraries, ~300 us). A no-op when threadpoolctl is
    missing or the work is large.
    """
    global _controller
    if work >= SINGLE_THREAD_WORK:
        return contextlib.nullcontext()
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return contextlib.nullcontext()
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
