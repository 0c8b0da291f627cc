"""truncation_sweep: every Window(k) gradient from one pass equals the one computed on its own,
for every cell, head or not, every loss and reduction.

The sweep adds the same per-step terms as `loss_and_grads` in another order, so the two agree to
the round-off of reordered float64 sums: TOLERANCES["jax"] (see tolerances.py).
"""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research import truncation_sweep
from handgrad.strategies import MEMBERS, cases, make_case, specs

TOL = hg.TOLERANCES["jax"]


def _with(spec, truncation):
    return hg.Spec(**{**spec.__dict__, "truncation": truncation})


def state(d):
    """A state gradient as one array: the LSTM's pair (dh_0, dc_0) side by side."""
    return np.concatenate(d, axis=-1) if isinstance(d, tuple) else d


@given(cases(spec=specs(truncation=st.none()), max_T=7, max_H=4))
def test_sweep_equals_each_window_computed_alone(case):
    T = case.xs.shape[1]
    sweep = truncation_sweep(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    assert list(sweep.ks) == list(range(T))
    assert type(sweep.grads) is type(case.params) is type(sweep.full)
    lstm = case.spec.cell == "lstm"
    assert isinstance(sweep.dh0, tuple) == isinstance(sweep.full_dh0, tuple) == lstm
    loss, full, full_dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, _with(case.spec, None), h0=case.h0,
                                             wrt_h0=True)
    assert sweep.loss == pytest.approx(loss, rel=TOL)
    assert list(sweep.full.arrays()) == list(full.arrays())
    for i, k in enumerate(sweep.ks):
        _, g, dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, _with(case.spec, hg.Window(int(k))),
                                      h0=case.h0, wrt_h0=True)
        for name, expected in g.arrays().items():
            err = hg.rel_error(getattr(sweep.grads, name)[i], expected)
            assert err <= TOL, f"Window({k}) d{name}: rel error {err:.2e}"
        assert hg.rel_error(state(sweep.dh0)[i], state(dh0)) <= TOL, f"Window({k}) dh0"
    for name, expected in full.arrays().items():
        assert hg.rel_error(getattr(sweep.full, name), expected) <= TOL, f"full d{name}"
    assert hg.rel_error(state(sweep.full_dh0), state(full_dh0)) <= TOL


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("member", list(MEMBERS))
def test_sweep_equals_each_window_for_every_member(member, output):
    """One fixed case per member of the family (the property above draws them at random)."""
    spec = hg.Spec(**{**MEMBERS[member], "output": output, "loss": "cross_entropy",
                      "reduction": "batch_mean"})
    case = make_case(spec, 2, 5, 2, 3, 3, seed=7)
    sweep = truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0)
    for i, k in enumerate(sweep.ks):
        _, g, dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, _with(spec, hg.Window(int(k))),
                                      h0=case.h0, wrt_h0=True)
        for name, expected in g.arrays().items():
            assert hg.rel_error(getattr(sweep.grads, name)[i], expected) <= TOL, (k, name)
        assert hg.rel_error(state(sweep.dh0)[i], state(dh0)) <= TOL, (k, "dh0")
    assert 0 < sweep.l2_error[0] and sweep.l2_error[-1] <= TOL     # truncation bites, then none


@given(cases(spec=specs(truncation=st.none()), max_T=6, max_H=3))
def test_sweep_curves_are_the_project_metrics(case):
    """The vectorised curves are exactly rel_error / cosine of the returned gradients (the
    initial state's over the whole state: the LSTM's h_0 and c_0 together)."""
    sweep = truncation_sweep(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    names = list(sweep.full.arrays())
    for i in range(len(sweep.ks)):
        for name in names:
            got, full = getattr(sweep.grads, name)[i], getattr(sweep.full, name)
            assert sweep.per_param[name].rel_error[i] == pytest.approx(hg.rel_error(got, full),
                                                                      rel=1e-12, abs=1e-300)
            assert sweep.per_param[name].cosine[i] == pytest.approx(hg.cosine(got, full), abs=1e-12)
        h0, dh0, full_dh0 = sweep.per_param["h0"], state(sweep.dh0)[i], state(sweep.full_dh0)
        assert h0.rel_error[i] == pytest.approx(hg.rel_error(dh0, full_dh0), rel=1e-12, abs=1e-300)
        assert h0.cosine[i] == pytest.approx(hg.cosine(dh0, full_dh0), abs=1e-12)
        flat = np.concatenate([np.ravel(getattr(sweep.grads, n)[i]) for n in names])
        ref = np.concatenate([np.ravel(getattr(sweep.full, n)) for n in names])
        assert sweep.rel_error[i] == pytest.approx(hg.rel_error(flat, ref), rel=1e-12, abs=1e-300)
        assert sweep.cosine[i] == pytest.approx(hg.cosine(flat, ref), abs=1e-12)
        l2 = np.linalg.norm(flat - ref) / np.linalg.norm(ref) if np.any(ref) else 0.0
        if np.any(ref):
            assert sweep.l2_error[i] == pytest.approx(l2, rel=1e-9, abs=1e-300)
    # V and c are never truncated; the full window is full BPTT up to reordered round-off
    assert ("V" in sweep.per_param) == case.spec.head
    if case.spec.head:
        assert np.all(sweep.per_param["V"].rel_error == 0)
    assert sweep.rel_error[-1] <= TOL and sweep.l2_error[-1] <= TOL
    if case.spec.output == "last":          # there the full gradient *is* the last partial sum
        assert sweep.rel_error[-1] == 0


@given(st.sampled_from(["last", "all"]), st.sampled_from(["elman", "lstm"]),
       st.lists(st.integers(0, 12), min_size=1, max_size=5))
def test_sweep_subset_of_ks_keeps_order_and_large_k_is_full(output, cell, ks):
    spec = hg.Spec(activation="sigmoid", output=output) if cell == "elman" else hg.Spec(
        output=output, cell=cell)
    case = make_case(spec, 2, 5, 2, 3, 2, seed=3)
    every = truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0)
    some = truncation_sweep(case.params, case.xs, case.ys, spec, ks=ks, h0=case.h0)
    assert list(some.ks) == ks
    for i, k in enumerate(ks):
        j = min(k, 4)                                   # Window(k >= T - 1) is full BPTT
        for name in every.full.arrays():
            assert hg.rel_error(getattr(some.grads, name)[i], getattr(every.grads, name)[j]) <= TOL
        assert hg.rel_error(state(some.dh0)[i], state(every.dh0)[j]) <= TOL
        assert some.rel_error[i] == pytest.approx(every.rel_error[j], rel=1e-9, abs=1e-15)


def test_sweep_ignores_spec_truncation_and_can_drop_grads():
    spec = hg.Spec(output="last", truncation=hg.Chunks(2))
    case = make_case(spec, 2, 6, 2, 3, 1, seed=0)
    a = truncation_sweep(case.params, case.xs, case.ys, spec, keep_grads=False)
    b = truncation_sweep(case.params, case.xs, case.ys, _with(spec, None))
    assert a.grads is None and a.dh0 is None
    np.testing.assert_array_equal(a.rel_error, b.rel_error)


@pytest.mark.parametrize("ks, word", [([-1], "k >= 0"), ([], "non-empty"), ([1.5], "integers"),
                                      ([[1, 2]], "1-D")])
def test_sweep_rejects_bad_ks(ks, word):
    spec = hg.Spec()
    case = make_case(spec, 1, 4, 1, 2, 1)
    with pytest.raises(ValueError, match=f"ks .*{re.escape(word)}"):   # names ks and the fault
        truncation_sweep(case.params, case.xs, case.ys, spec, ks=ks)


def test_sweep_rejects_bad_inputs_like_loss_and_grads():
    spec = hg.Spec()
    case = make_case(spec, 1, 4, 1, 2, 1)
    with pytest.raises(ValueError, match="xs"):
        truncation_sweep(case.params, case.xs[0], case.ys, spec)
