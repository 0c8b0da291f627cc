"""ARTBP: the expected compensated gradient is the full gradient, proved by summing over the
whole (finite) distribution of truncation outcomes, not by sampling; for every cell, head or not.

Each outcome's gradient and the full one are the same products summed in another order, weighted
by probabilities that sum to one: TOLERANCES["jax"] (round-off of reordered float64 sums).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research.artbp import (artbp_expectation, artbp_grads, artbp_tradeoff, outcomes,
                                     sample_passes)
from handgrad.strategies import MEMBERS, cases, make_case, specs

TOL = hg.TOLERANCES["jax"]


def state(d):
    """A state gradient as one array: the LSTM's pair (dh_0, dc_0) side by side."""
    return np.concatenate(d, axis=-1) if isinstance(d, tuple) else d


def _assert_unbiased(case, probs):
    T = case.xs.shape[1]
    exp = artbp_expectation(case.params, case.xs, case.ys, case.spec, probs, h0=case.h0)
    assert exp.total_prob == pytest.approx(1.0, abs=1e-12)
    assert exp.n_outcomes == (T + 1 if case.spec.output == "last" else 2 ** T)
    _, full, dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                     wrt_h0=True)
    assert type(exp.mean) is type(full) and list(exp.mean.arrays()) == list(full.arrays())
    for name, expected in full.arrays().items():
        err = hg.rel_error(getattr(exp.mean, name), expected)
        assert err <= TOL, f"E[d{name}]: {err:.2e}"
    assert isinstance(exp.mean_dh0, tuple) == isinstance(dh0, tuple)
    assert hg.rel_error(state(exp.mean_dh0), state(dh0)) <= TOL


@given(cases(spec=specs(truncation=st.none()), max_T=6, max_H=3, max_B=2),
       st.lists(st.floats(0.0, 0.9), min_size=6, max_size=6))
def test_artbp_is_exactly_unbiased(case, cut):
    _assert_unbiased(case, np.array(cut[:case.xs.shape[1]]))


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("member", list(MEMBERS))
def test_artbp_is_exactly_unbiased_for_every_member(member, output):
    """One fixed case per member (the property above draws them at random)."""
    spec = hg.Spec(**{**MEMBERS[member], "output": output, "head": member != "elman-tanh",
                      "loss": "linear"})
    _assert_unbiased(make_case(spec, 2, 5, 2, 3, 2, seed=8), np.linspace(0.1, 0.6, 5))


def test_no_cut_is_full_bptt_and_a_cut_is_a_truncation():
    """passes all True with c = 0 is full BPTT; c = 0 everywhere but a forced cut at step T - k
    (probability irrelevant to the values) is Window(k) for many-to-one."""
    spec = hg.Spec(activation="tanh", output="last")
    case = make_case(spec, 2, 6, 2, 3, 1, seed=4)
    _, full = hg.loss_and_grads(case.params, case.xs, case.ys, spec, h0=case.h0)
    _, g, _ = artbp_grads(case.params, case.xs, case.ys, spec, np.ones(6, bool), 0.0, h0=case.h0)
    assert max(hg.rel_error(a, b) for a, b in zip(g.arrays().values(), full.arrays().values())) <= TOL
    k = 2
    passes = np.ones(6, bool)
    passes[6 - 1 - k] = False                      # a_{T-k} does not pass to h_{T-k-1}
    _, g, _ = artbp_grads(case.params, case.xs, case.ys, spec, passes, 0.0, h0=case.h0)
    _, win = hg.loss_and_grads(case.params, case.xs, case.ys,
                               hg.Spec(activation="tanh", output="last", truncation=hg.Window(k)),
                               h0=case.h0)
    assert max(hg.rel_error(a, b) for a, b in zip(g.arrays().values(), win.arrays().values())) <= TOL


@pytest.mark.parametrize("member", ["elman-tanh", "gru-after", "lstm"])
def test_tradeoff_variance_equals_enumeration(member):
    """The fast variance (one backward pass) equals the variance of the explicit enumeration."""
    spec = hg.Spec(**{**MEMBERS[member], "output": "last"})
    case = make_case(spec, 2, 7, 2, 3, 1, seed=6)
    rows = artbp_tradeoff(case.params, case.xs, case.ys, spec, cut_probs=(0.4, 0.1), h0=case.h0)
    sweep = hg.truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0, keep_grads=False)
    gnorm = np.linalg.norm(np.concatenate([np.ravel(a) for a in sweep.full.arrays().values()]))
    for row in rows:
        exp = artbp_expectation(case.params, case.xs, case.ys, spec, row.cut_prob, h0=case.h0)
        assert row.rel_std == pytest.approx(np.sqrt(exp.variance) / gnorm, rel=1e-9)
        probs = np.full(7, row.cut_prob)
        steps = sum(o.prob * min(int(o.passes[::-1].argmin()) if not o.passes.all() else 7, 6) + o.prob
                    for o in outcomes(probs, "last"))
        assert row.expected_steps == pytest.approx(steps, rel=1e-12)
    assert rows[0].expected_steps < rows[1].expected_steps and rows[0].rel_std > rows[1].rel_std


def test_monte_carlo_mean_approaches_the_full_gradient():
    """Sampling agrees with the exact expectation (a loose statistical check of sample_passes:
    2000 draws, error well inside 5 standard errors)."""
    spec = hg.Spec(activation="tanh", output="last")
    case = make_case(spec, 1, 5, 1, 2, 1, seed=1)
    probs = np.full(5, 0.3)
    exp = artbp_expectation(case.params, case.xs, case.ys, spec, probs)
    rng = np.random.default_rng(0)
    draws = np.array([artbp_grads(case.params, case.xs, case.ys, spec, sample_passes(rng, probs),
                                  probs)[1].W for _ in range(2000)])
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - exp.mean.W) <= 5 * se + 1e-15)


def test_bad_probabilities():
    spec = hg.Spec(output="last")
    case = make_case(spec, 1, 4, 1, 2, 1)
    for bad in (1.0, -0.1, [0.1, 0.2]):
        with pytest.raises(ValueError, match="probs"):
            artbp_grads(case.params, case.xs, case.ys, spec, np.ones(4, bool), bad)
    with pytest.raises(ValueError, match="passes"):
        artbp_grads(case.params, case.xs, case.ys, spec, np.ones(3, bool), 0.1)
    with pytest.raises(ValueError, match="many-to-one"):
        artbp_tradeoff(case.params, case.xs, np.zeros((1, 4, 1)), hg.Spec(output="all"))
