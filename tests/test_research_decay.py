"""Decay diagnostics: the bias bound holds against the bias of each Window(k) computed on its own, and the adaptive
k it picks meets the user's tolerance; for every cell, head or not."""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research import truncation_sweep
from handgrad.bptt import forward_states, initial_state, state_gradient
from handgrad.cells import cell_for, weights_of
from handgrad.research.decay import (adaptive_k, decay_profile, fit_rate, jacobian_facts,
                                     state_jacobians)
from handgrad.strategies import MEMBERS, cases, make_case, specs

TOL = hg.TOLERANCES["jax"]     # the bound and the measurement are reordered float64 sums


@given(cases(spec=specs(truncation=st.none()), max_T=8, max_H=4))
def test_bias_bound_holds_for_every_k(case):
    """||g_k - g|| / ||g|| <= sum_{j>k} ||piece_j|| / ||g|| for every k, with g_k and g each
    computed on its own by hg.loss_and_grads (Window(k) and full BPTT), not from the profile's
    pieces: the bound is a triangle inequality only if the pieces really add up to g - g_k.
    And adaptive_k(tol) picks a k whose true bias is within tol."""
    prof = decay_profile(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    T = case.xs.shape[1]
    assert prof.complete and len(prof.lags) == T

    def flat(truncation):
        spec = dataclasses.replace(case.spec, truncation=truncation)
        _, grads = hg.loss_and_grads(case.params, case.xs, case.ys, spec, h0=case.h0)
        return np.concatenate([g.ravel() for g in grads.arrays().values()])
    full = flat(None)
    norm = np.linalg.norm(full)
    bias = np.array([np.linalg.norm(flat(hg.Window(k)) - full) for k in range(T)])
    bias = bias / norm if norm > 0 else bias
    bound = prof.bias_bound(np.arange(T))
    assert np.all(bias <= bound * (1 + TOL) + TOL), (bias, bound)
    for tol in (0.3, 1e-2, 1e-4):
        k = adaptive_k(prof, tol)
        assert k >= T - 1 or bias[k] <= tol * (1 + TOL) + TOL, (k, tol, bias)


def _spec(member, **fields):
    return hg.Spec(**{**MEMBERS[member], **fields})


@pytest.mark.parametrize("member", ["elman-tanh", "gru-before", "lstm"])
@pytest.mark.parametrize("output", ["last", "all"])
def test_pieces_and_norms_match_the_sweep(output, member):
    """piece_norm[j] is the norm of Window(j) - Window(j-1) on the cell's weights; grad_norm is
    ||g||."""
    spec = _spec(member, output=output)
    case = make_case(spec, 2, 7, 2, 3, 2, seed=5)
    sweep = truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0)
    prof = decay_profile(case.params, case.xs, case.ys, spec, h0=case.h0)
    g = sweep.grads
    cell_arrays = [a for n, a in g._asdict().items() if a is not None and n not in ("V", "c")]
    diffs = [np.concatenate([np.ravel(a[j] - (a[j - 1] if j else 0)) for a in cell_arrays])
             for j in range(7)]
    np.testing.assert_allclose(prof.piece_norm, [np.linalg.norm(d) for d in diffs], rtol=1e-9)
    full = np.concatenate([np.ravel(a) for a in sweep.full.arrays().values()])
    assert prof.grad_norm == pytest.approx(np.linalg.norm(full), rel=1e-12)


def _states(params, xs, spec, h0):
    """s_0 .. s_T (T + 1, B, W), batch second."""
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    return forward_states(params, xs_tm, initial_state(h0, xs.shape[0], params.sizes[1], spec),
                          spec, derivative=False).states


@pytest.mark.parametrize("member", list(MEMBERS))
def test_dh_norm_is_the_gradient_wrt_earlier_states_many_to_one(member):
    """dh_norm[j] = ||dL/ds_{T-j}|| over the whole state (the LSTM's h and c), checked by the
    full gradient of s_0 on the tail sequence: restarting at s_{T-j} makes that state the input."""
    spec = _spec(member, output="last", head=member != "lstm")
    case = make_case(spec, 2, 6, 2, 3, 1, seed=2)
    prof = decay_profile(case.params, case.xs, case.ys, spec, h0=case.h0)
    states = _states(case.params, case.xs, spec, case.h0)
    T = 6
    for j in range(1, T):
        start = state_gradient(states[T - j], spec)                   # s_{T-j}, in h0's shape
        _, _, dh = hg.loss_and_grads(case.params, case.xs[:, T - j:], case.ys, spec,
                                     h0=start, wrt_h0=True)
        whole = np.concatenate(dh, axis=-1) if isinstance(dh, tuple) else dh
        assert prof.dh_norm[j] == pytest.approx(np.linalg.norm(whole), rel=1e-12)


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
    assert facts.pairs == 3 * 6 and facts.jacobian_max <= facts.observed_bound * (1 + TOL)
    big = case.params._replace(U=case.params.U * 1e3)
    assert jacobian_facts(big, np.abs(case.xs) + 1, spec).saturated_fraction == 1.0


@pytest.mark.parametrize("member", list(MEMBERS))
def test_state_jacobians_equal_the_complex_step(member):
    """The Jacobians ds_t/ds_{t-1} from the cell's backward step equal the complex-step
    derivative of one forward step (every column, every step and sample)."""
    spec = _spec(member)
    case = make_case(spec, 2, 4, 2, 3, 2, seed=3)
    params, cell = case.params, cell_for(spec)
    xs_tm = np.ascontiguousarray(np.swapaxes(case.xs, 0, 1))
    fwd = forward_states(params, xs_tm, initial_state(case.h0, 2, 3, spec), spec)
    T, B, Wd = 4, 2, fwd.states.shape[-1]
    ts, bs = np.repeat(np.arange(1, T + 1), B), np.tile(np.arange(B), T)
    J = state_jacobians(cell, weights_of(params), fwd, ts, bs)
    step = 1e-20
    for i in range(Wd):               # column i: move s_{t-1}[i] by i * step, every (t, b) at once
        moved = np.empty((T, B, Wd), complex)
        for t in range(1, T + 1):
            s_prev = fwd.states[t - 1] + 1j * step * np.eye(Wd)[i]
            moved[t - 1] = forward_states(params, xs_tm[t - 1:t], s_prev, spec,
                                          derivative=False).states[1]
        expected = (moved.imag / step)[ts - 1, bs]                  # (N, W): d s_t / d s_{t-1}[i]
        assert hg.rel_error(J[:, :, i], expected) <= hg.TOLERANCES["complex_step"], i


@pytest.mark.parametrize("member", list(MEMBERS))
def test_jacobian_facts_every_cell(member):
    """The measured Jacobian norm bounds every per-sample step of the backpropagated gradient:
    ||dL/ds_{t-1}|| <= ||J_t|| ||dL/ds_t|| (many-to-one, all (t, b) pairs measured)."""
    spec = _spec(member, output="last")
    case = make_case(spec, 3, 6, 2, 4, 1, seed=1)
    facts = jacobian_facts(case.params, case.xs, spec, h0=case.h0)
    assert facts.pairs == 18 and facts.jacobian_max > 0
    gated = spec.cell != "elman"
    assert math.isnan(facts.jacobian_bound) == gated
    prof = decay_profile(case.params, case.xs, case.ys, spec, h0=case.h0)
    if not gated:
        assert facts.jacobian_max <= facts.observed_bound * (1 + TOL)
        assert facts.observed_bound <= facts.jacobian_bound * (1 + TOL)
    # the decay over one lag of one sample's gradient cannot beat the largest Jacobian norm;
    # with B samples the batch norm obeys the same bound
    ratios = prof.dh_norm[1:] / prof.dh_norm[:-1]
    assert np.all(ratios <= facts.jacobian_max * (1 + TOL))
    sub = jacobian_facts(case.params, case.xs, spec, h0=case.h0, max_pairs=5)
    assert sub.pairs == 5 and sub.jacobian_max <= facts.jacobian_max


def test_bad_arguments():
    spec = hg.Spec()
    case = make_case(spec, 1, 4, 1, 2, 1)
    with pytest.raises(ValueError, match="max_lag"):
        decay_profile(case.params, case.xs, case.ys, spec, max_lag=-1)
    prof = decay_profile(case.params, case.xs, case.ys, spec)
    with pytest.raises(ValueError, match="tol"):
        adaptive_k(prof, -0.1)
    with pytest.raises(ValueError, match="max_pairs"):
        jacobian_facts(case.params, case.xs, spec, max_pairs=0)
