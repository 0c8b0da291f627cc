"""Teeth: classic BPTT mistakes injected into handgrad/bptt.py are caught by the property suite.

Each mutant is made by replacing an exact snippet of the source of `handgrad/bptt.py` and
executing the result as a fresh module (the real `handgrad.bptt` is untouched). A snippet that is
not found exactly once fails the test loudly, so this file cannot go stale silently when bptt.py
changes: update the snippet instead. Hypothesis then searches `handgrad.strategies.cases()` for a
case where the mutant's gradient disagrees with the complex step (the `hand == complex step`
property of test_numdiff.py), and shrinks it to a minimal one, which is printed (run with -s) and
listed in the README (How the gradients are proven).

Snippets of bptt.py this file depends on (each must occur exactly once):
  act_derivative(activation, pre          dh += dos[                flat_da.T @ hs[lo:-1]
  np.matmul(da, W, out=dh)                np.matmul(da[:n].reshape(n * B, H), W,
  for i in range(k + 1):                  segments(spec.truncation, T, spec.output)
  range(seg.last, seg.cut, -1)            "dh0 += dh " (with the trailing space)
"""
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import NoSuchExample

import handgrad.bptt
from handgrad import checks
from handgrad.strategies import cases

SOURCE = Path(handgrad.bptt.__file__).read_text()

APPEND = None   # an edit whose snippet is APPEND adds its text at the end of the module

_SEGMENTS_OFF_BY_ONE = """

def _mutant_segments(truncation, T, output):   # MUTANT: each sweep reaches one step too far
    from handgrad.spec import TBPTT, segments
    if truncation is None:
        return segments(None, T, output)
    tb = truncation.as_tbptt()
    return segments(TBPTT(tb.k1, tb.k2 + 1), T, output)
"""

# name -> (what the mistake is, [(exact snippet, replacement), ...])
MUTANTS = {
    "derivative of the pre-activation": (
        "act'(a) by the output-based formula applied to a: a(1 - a) or 1 - a^2",
        [("act_derivative(activation, pre",
          "(lambda activation, a, **_: a * (1 - a) if activation == 'sigmoid' else 1 - a * a)"
          "(activation, pre")]),
    "carried gradient dropped": (
        "dL/dh_t takes only the output's term, not the gradient carried back from step t + 1",
        [("dh += dos[", "dh[...] = dos[")]),
    "dW paired with h_t": (
        "dW sums da_t h_t^T instead of da_t h_{t-1}^T",
        [("flat_da.T @ hs[lo:-1]", "flat_da.T @ hs[lo + 1:]")]),
    "W transposed in the carry": (
        "dh_{t-1} = W da_t instead of W^T da_t (both backward paths)",
        [("np.matmul(da, W, out=dh)", "np.matmul(da, W.T, out=dh)"),
         ("np.matmul(da[:n].reshape(n * B, H), W,", "np.matmul(da[:n].reshape(n * B, H), W.T,")]),
    "Window(k) off by one": (
        "the many-to-many Window(k) path backpropagates k - 1 transitions instead of k",
        [("for i in range(k + 1):", "for i in range(k):")]),
    "TBPTT(k1, k2) off by one": (
        "every truncated sweep reaches k2 + 1 steps back instead of k2",
        [("segments(spec.truncation, T, spec.output)",
          "_mutant_segments(spec.truncation, T, spec.output)"),
         (APPEND, _SEGMENTS_OFF_BY_ONE)]),
    "truncation ignored": (
        "the 'truncated' gradient is full BPTT (sweep path)",
        [("segments(spec.truncation, T, spec.output)", "segments(None, T, spec.output)")]),
    "sweep stops one step early": (
        "the backward loop of each sweep skips its earliest step",
        [("range(seg.last, seg.cut, -1)", "range(seg.last, seg.cut + 1, -1)")]),
    "dh0 overwritten": (
        "dh0 keeps only the last sweep that reaches h_0 instead of their sum",
        [("dh0 += dh ", "dh0 = 1 * dh ")]),
}


def mutant_module(edits) -> types.ModuleType:
    """handgrad/bptt.py with `edits` applied, executed as a fresh module of the handgrad package."""
    source = SOURCE
    for old, new in edits:
        if old is APPEND:
            source += new
            continue
        count = source.count(old)
        if count != 1:
            pytest.fail(f"mutation site {old!r} found {count} times in handgrad/bptt.py "
                        "(expected exactly once): update tests/test_mutations.py")
        source = source.replace(old, new)
    module = types.ModuleType("handgrad._mutant_bptt")
    module.__package__ = "handgrad"
    exec(compile(source, "<mutated handgrad/bptt.py>", "exec"), module.__dict__)  # noqa: S102
    return module


SEARCH = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))


def disagrees(implementation):
    return lambda case: not checks.agreement(case, "complex_step",
                                             checks.hand(case, implementation)).ok


def describe(case) -> str:
    s = case.spec
    sizes = ", ".join(f"{k}={v}" for k, v in case.sizes.items())
    return (f"{sizes}; {s.activation}, bias={s.bias}, output={s.output}, {s.loss}, "
            f"{s.reduction}, truncation={s.truncation}, h0={'given' if case.h0 is not None else 'zero'}, "
            f"weights {case.scale!r}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_property_suite_kills_the_mutant(name):
    what, edits = MUTANTS[name]
    mutant = mutant_module(edits)
    minimal = find(cases(), disagrees(mutant.loss_and_grads), settings=SEARCH)
    agr = checks.agreement(minimal, "complex_step", checks.hand(minimal, mutant.loss_and_grads))
    print(f"\nmutant {name!r} ({what}) killed; minimal case: {describe(minimal)}\n"
          f"  {checks.describe(agr)}")
    assert not agr.ok


def test_the_unmutated_source_passes_through_the_same_machinery():
    """The kills above are the mutations' doing, not the exec machinery's."""
    module = mutant_module([])
    with pytest.raises(NoSuchExample):
        find(cases(), disagrees(module.loss_and_grads),
             settings=settings(SEARCH, max_examples=40))
