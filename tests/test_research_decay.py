"""Decay diagnostics: the bias bound holds against the bias the sweep measures, and the adaptive
k it picks meets the user's tolerance."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research import truncation_sweep
from handgrad.research.decay import adaptive_k, decay_profile, fit_rate, jacobian_facts
from handgrad.strategies import cases, make_case, specs

TOL = hg.TOLERANCES["jax"]     # the bound and the measurement are reordered float64 sums


@given(cases(spec=specs(truncation=st.none(), cell="elman", head=True), max_T=8, max_H=4))
def test_bias_bound_holds_for_every_k(case):
    """||g_k - g|| <= sum_{j>k} ||piece_j||: the triangle inequality over measured pieces."""
    sweep = truncation_sweep(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    prof = decay_profile(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    assert prof.complete and len(prof.lags) == case.xs.shape[1]
    bound = prof.bias_bound(sweep.ks)
    assert np.all(sweep.l2_error <= bound * (1 + TOL) + TOL), (sweep.l2_error, bound)
    for tol in (0.3, 1e-2, 1e-4):
        k = adaptive_k(prof, tol)
        assert sweep.l2_error[k] <= tol * (1 + TOL) + TOL


@pytest.mark.parametrize("output", ["last", "all"])
def test_pieces_and_norms_match_the_sweep(output):
    """piece_norm[j] is the norm of Window(j) - Window(j-1) on U, W, b; grad_norm is ||g||."""
    spec = hg.Spec(activation="tanh", output=output)
    case = make_case(spec, 2, 7, 2, 3, 2, seed=5)
    sweep = truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0)
    prof = decay_profile(case.params, case.xs, case.ys, spec, h0=case.h0)
    g = sweep.grads
    diffs = [np.concatenate([np.ravel(a[j] - (a[j - 1] if j else 0)) for a in (g.U, g.W, g.b)])
             for j in range(7)]
    np.testing.assert_allclose(prof.piece_norm, [np.linalg.norm(d) for d in diffs], rtol=1e-9)
    full = np.concatenate([np.ravel(a) for a in sweep.full.arrays().values()])
    assert prof.grad_norm == pytest.approx(np.linalg.norm(full), rel=1e-12)


def test_dh_norm_is_the_gradient_wrt_earlier_states_many_to_one():
    """dh_norm[j] = ||dL/dh_{T-j}||, checked by Window(j)'s h0 gradient on the tail sequence:
    restarting the sequence at h_{T-j} makes that state the input h0."""
    spec = hg.Spec(activation="tanh", output="last")
    case = make_case(spec, 2, 6, 2, 3, 1, seed=2)
    prof = decay_profile(case.params, case.xs, case.ys, spec, h0=case.h0)
    _, hs = hg.predict(case.params, case.xs, spec, h0=case.h0)
    T = 6
    for j in range(1, T):
        start = hs[:, T - j - 1]                                   # h_{T-j}
        _, _, dh = hg.loss_and_grads(case.params, case.xs[:, T - j:], case.ys, spec,
                                     h0=start, wrt_h0=True)
        assert prof.dh_norm[j] == pytest.approx(np.linalg.norm(dh), rel=1e-12)


def test_geometric_profile_fit_is_exact():
    g = 3.0 * 0.7 ** np.arange(10)
    rate, scale = fit_rate(g)
    assert rate == pytest.approx(0.7, rel=1e-12) and scale == pytest.approx(3.0, rel=1e-12)
    assert all(math.isnan(v) for v in fit_rate([1.0, 0.0, 0.0]))


def test_probe_extrapolates_on_a_contracting_network():
    """A short probe (8 of 40 lags) still picks a k whose measured bias meets the tolerance on a
    contracting tanh network (sigma_max(W) < 1), and not wastefully larger than needed."""
    spec = hg.Spec(activation="tanh", output="all")
    case = make_case(spec, 4, 40, 3, 8, 2, seed=11, scale="moderate")
    W = case.params.W * (0.8 / np.linalg.norm(case.params.W, 2))     # ||J_t|| <= 0.8
    params = case.params._replace(W=W)
    facts = jacobian_facts(params, case.xs, spec)
    assert facts.jacobian_bound == pytest.approx(0.8)
    sweep = truncation_sweep(params, case.xs, case.ys, spec)
    probe = decay_profile(params, case.xs, case.ys, spec, max_lag=7)
    assert not probe.complete and probe.rate < 0.8
    for tol in (1e-2, 1e-3, 1e-4):
        k = adaptive_k(probe, tol)
        needed = int(np.nonzero(sweep.l2_error <= tol)[0][0])
        assert sweep.l2_error[k] <= tol and k <= needed + 3, (tol, k, needed)


def test_jacobian_facts_sigmoid_and_saturation():
    spec = hg.Spec(activation="sigmoid", bias=False, output="last")
    case = make_case(spec, 3, 6, 2, 4, 1, seed=0, scale="tutorial")
    facts = jacobian_facts(case.params, case.xs, spec)
    assert facts.max_derivative == 0.25
    assert facts.jacobian_bound == pytest.approx(np.linalg.norm(case.params.W, 2) / 4)
    assert facts.observed_bound <= facts.jacobian_bound
    assert 0.0 <= facts.saturated_fraction <= 1.0
    big = case.params._replace(U=case.params.U * 1e3)
    assert jacobian_facts(big, np.abs(case.xs) + 1, spec).saturated_fraction == 1.0


def test_bad_arguments():
    spec = hg.Spec()
    case = make_case(spec, 1, 4, 1, 2, 1)
    with pytest.raises(ValueError, match="max_lag"):
        decay_profile(case.params, case.xs, case.ys, spec, max_lag=-1)
    prof = decay_profile(case.params, case.xs, case.ys, spec)
    with pytest.raises(ValueError, match="tol"):
        adaptive_k(prof, -0.1)
