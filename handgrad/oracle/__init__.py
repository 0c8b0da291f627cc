"""The gradient oracle: check anyone's RNN gradients against the proven hand BPTT.

    report = hg.check(candidate, spec, max_examples=100)   # raises hg.GradientMismatch
    found = hg.identify(candidate, spec)                    # found.truncation
    hg.replay(".handgrad-failures/W-0123456789ab.npz", candidate)

`candidate(params, xs, ys, h0) -> (loss, grads)` with grads a mapping or an object with U, W, V
(b, c with bias; optionally h0). See docs/oracle.md: the diagnosis of a mismatch (`diagnose`),
compiled candidates (`sizes=`, `handgrad.adapters`), programs in any language (`exec`,
`handgrad check --exec`), timeouts and nondeterminism (`run`).
"""
from .check import check, replay
from .confirm import OracleError
from .identify import Identified, identify
from .report import CandidateError, CheckReport, GradientMismatch

__all__ = ["check", "replay", "identify", "Identified", "GradientMismatch", "CandidateError",
           "CheckReport", "OracleError"]
