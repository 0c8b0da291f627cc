"""RTRL, SnAp and UORO (issue 13), proven:

- RTRL == hand BPTT (loss, every gradient, dh0) over the Elman family: TOLERANCES["jax"] (the
  same products summed in another order, forward instead of backward);
- SnAp-n == the dense RTRL whose influence is masked by S_n after every step, and SnAp-n == RTRL
  where S_n is full;
- UORO's expectation, summed exactly over every sign pattern of every step, == the full gradient;
  the variance mechanism behind "the noise grows with T", exactly;
- the metric set, online training, the long-sequence profile (== truncation_sweep and
  decay_profile where those can run) and `handgrad estimators`.
The JAX comparison is in test_research_online_jax.py.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research import (masked_rtrl_grads, rtrl_grads, snap_grads, snap_pattern,
                               uoro_expectation, uoro_grads)
from handgrad.research._online import forward_pass, problem
from handgrad.research.rtrl import rtrl_method
from handgrad.research.uoro import all_signs, sign_source, uoro_method
from handgrad.strategies import cases, make_case, specs

TOL = hg.TOLERANCES["jax"]
FULL = specs(truncation=st.none(), cell="elman", head=True)


def assert_same(got, want, what=""):
    for name, expected in want.arrays().items():
        err = hg.rel_error(getattr(got, name), expected)
        assert err <= TOL, f"{what} d{name}: {err:.2e}"
    assert set(got.arrays()) == set(want.arrays())


# ---- RTRL ---------------------------------------------------------------------------------

@given(cases(spec=FULL, max_T=7, max_H=4, max_B=3))
def test_rtrl_equals_bptt(case):
    loss, grads, dh0 = rtrl_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                  wrt_h0=True)
    want_loss, want, want_dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec,
                                                  h0=case.h0, wrt_h0=True)
    assert hg.rel_error(loss, want_loss) <= TOL
    assert_same(grads, want, "rtrl")
    assert hg.rel_error(dh0, want_dh0) <= TOL


def test_rtrl_memory_does_not_grow_with_T_and_groups_give_the_same_answer(monkeypatch):
    """The carry is (H, B, H Z) whatever T; splitting the batch into groups changes nothing."""
    from handgrad.research import rtrl
    spec = hg.Spec(output="all")
    case = make_case(spec, 5, 9, 2, 3, 2, seed=3)
    seen = []
    prob = problem(case.params, case.xs, case.ys, spec, case.h0, "test")
    forward_pass(prob, rtrl_method(), after_step=lambda t, carry: seen.append(carry.M.shape))
    assert set(seen) == {(3, 5, 3 * (3 + 2 + 1))}
    whole = rtrl_grads(case.params, case.xs, case.ys, spec, h0=case.h0, wrt_h0=True)
    monkeypatch.setattr(rtrl, "CARRY_BYTES", 8 * 3 * 3 * 6 * 2)   # two samples per group
    grouped = rtrl_grads(case.params, case.xs, case.ys, spec, h0=case.h0, wrt_h0=True)
    assert_same(grouped[1], whole[1])
    assert hg.rel_error(grouped[2], whole[2]) <= TOL and grouped[0] == pytest.approx(whole[0])


@dataclass(frozen=True)
class _FutureSpec(hg.Spec):
    """A Spec with the fields the lead is adding (cell, head), to check they are refused."""

    cell: str = "elman"
    head: bool = True


@pytest.mark.parametrize("fn", [rtrl_grads, uoro_grads, snap_grads])
@pytest.mark.parametrize("spec, word", [
    (hg.Spec(truncation=hg.Window(3)), "truncation"),
    (hg.Spec(truncation=hg.Chunks(2)), "truncation"),
    (_FutureSpec(cell="gru"), "cell"),
    (_FutureSpec(head=False), "head"),
])
def test_out_of_family_specs_are_refused(fn, spec, word):
    case = make_case(hg.Spec(), 1, 3, 1, 2, 1)
    with pytest.raises(ValueError, match=word):
        fn(case.params, case.xs, case.ys, spec)


def test_bad_arguments():
    case = make_case(hg.Spec(), 1, 3, 1, 2, 1)
    args = (case.params, case.xs, case.ys, case.spec)
    with pytest.raises(ValueError, match="wrt_h0"):
        rtrl_grads(*args, wrt_h0="yes")
    with pytest.raises(ValueError, match="n must be"):
        snap_grads(*args, n=0)
    with pytest.raises(ValueError, match="signs"):
        uoro_grads(*args, signs=np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="seed"):
        uoro_grads(*args, seed=-1)
    with pytest.raises(ValueError, match="mask"):
        masked_rtrl_grads(*args, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="xs"):
        rtrl_grads(case.params, case.xs[0], case.ys, case.spec)


# ---- SnAp ---------------------------------------------------------------------------------

@st.composite
def sparse_cases(draw):
    """Family cases whose W has structural zeros (the setting SnAp is for)."""
    case = draw(cases(spec=FULL, max_T=6, max_H=5, max_B=2))
    H = case.params.W.shape[0]
    keep = np.random.default_rng(case.seed).random((H, H)) < draw(st.sampled_from([0.2, 0.4, 1.0]))
    return case._replace(params=case.params._replace(W=case.params.W * keep))


@given(sparse_cases(), st.integers(1, 3))
def test_snap_equals_masked_rtrl(case, n):
    loss, got = snap_grads(case.params, case.xs, case.ys, case.spec, n=n, h0=case.h0)
    mask = snap_pattern(case.params.W, n)
    want_loss, want = masked_rtrl_grads(case.params, case.xs, case.ys, case.spec, mask,
                                        h0=case.h0)
    assert hg.rel_error(loss, want_loss) <= TOL
    assert_same(got, want, f"snap-{n}")


@given(sparse_cases())
def test_snap_is_rtrl_once_the_pattern_is_closed(case):
    """S_n stops growing after at most H - 1 edges: then SnAp-n keeps every entry RTRL can make
    nonzero, and the two are the same gradient (dense W: already at n = 2)."""
    H = case.params.W.shape[0]
    _, exact = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    _, got = snap_grads(case.params, case.xs, case.ys, case.spec, n=H + 1, h0=case.h0)
    assert_same(got, exact, f"snap-{H + 1}")
    if np.all(case.params.W != 0):
        assert_same(snap_grads(case.params, case.xs, case.ys, case.spec, n=2, h0=case.h0)[1],
                     exact, "snap-2, dense")


def test_snap_pattern_and_bias():
    W = np.array([[0.5, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.2, 0.1]])   # 1 -> 2 -> 3
    assert np.array_equal(snap_pattern(W, 1), np.eye(3, dtype=bool))
    assert np.array_equal(snap_pattern(W, 2), (W != 0) | np.eye(3, dtype=bool))
    assert snap_pattern(W, 3)[2, 0] and not snap_pattern(W, 2)[2, 0]   # two edges: 1 -> 3
    spec = hg.Spec(output="all")
    case = make_case(spec, 2, 6, 2, 3, 2, seed=5)
    p = case.params._replace(W=W)
    _, exact = hg.loss_and_grads(p, case.xs, case.ys, spec, h0=case.h0)
    _, s1 = snap_grads(p, case.xs, case.ys, spec, n=1, h0=case.h0)
    assert hg.rel_error(s1.W, exact.W) > 1e-3                # SnAp-1 drops influence: biased
    assert hg.rel_error(s1.V, exact.V) <= TOL                # ... but the output layer is exact


# ---- UORO ---------------------------------------------------------------------------------

@settings(max_examples=30)
@given(cases(spec=FULL, max_T=3, max_H=2, max_B=2))
def test_uoro_is_exactly_unbiased(case):
    """Every one of the 2^(T B H) sign patterns, equally likely: the mean is the gradient."""
    exp = uoro_expectation(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    B, T, _ = case.xs.shape
    assert exp.n_outcomes == 2 ** (T * B * case.params.W.shape[0])
    _, full = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0)
    assert_same(exp.mean, full, "E[uoro]")


def test_uoro_exact_on_a_longer_sequence_and_monte_carlo_agrees():
    """T = 6 (2^12 patterns); 1000 sampled estimates agree with the exact mean within 5 standard
    errors (a statistical check that uoro_grads draws its signs as the enumeration weighs them)."""
    spec = hg.Spec(activation="sigmoid", output="all", loss="cross_entropy", reduction="mean")
    case = make_case(spec, 1, 6, 2, 2, 3, seed=11)
    exp = uoro_expectation(case.params, case.xs, case.ys, spec, h0=case.h0)
    _, full = hg.loss_and_grads(case.params, case.xs, case.ys, spec, h0=case.h0)
    assert_same(exp.mean, full)
    rng = np.random.default_rng(0)
    draws = np.array([uoro_grads(case.params, case.xs, case.ys, spec, h0=case.h0, seed=rng)[1].W
                      for _ in range(1000)])
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - full.W) <= 5 * se + 1e-15)
    var = float(np.sum(draws.var(axis=0)))                 # W's share of the total variance
    assert var <= exp.variance * 1.2


def _influence_errors(params, xs, spec, h0=None):
    """Exactly, for every step t: UORO's influence error D_t = ht_t tt_t^T - M_t for every sign
    pattern (N, P), and J_t D_{t-1} (N, P). M_t from RTRL."""
    B, T, _ = xs.shape
    H = params.W.shape[0]
    ys = np.zeros((B, T, params.V.shape[0]))
    prob = problem(params, xs, ys, spec, h0, "test")
    Ms, ds = [], []
    forward_pass(prob, rtrl_method(), after_step=lambda t, c: Ms.append(
        c.M.transpose(1, 0, 2).reshape(B, -1).copy()))
    signs = all_signs(T, B, H)
    N = signs.shape[1]
    rep = prob._replace(xs=np.tile(xs, (N, 1, 1)), ys=np.tile(ys, (N, 1, 1)),
                        h0=np.tile(prob.h0, (N, 1)))
    ests = []

    def record(t, carry):
        ests.append((carry.h[:, :, None] * carry.th.reshape(N, 1, -1)).reshape(N, -1))
    # act'(a_t) of every step, for J_t = diag(act') W (the states do not depend on the signs)
    from handgrad.research._online import forward_step, theta
    h = prob.h0
    for t in range(T):
        out = forward_step(theta(params), h, xs[:, t], spec.activation, params.b is not None)
        ds.append(out.d)
        h = out.h
    forward_pass(rep, uoro_method(sign_source(signs)), after_step=record)
    D = [e - M for e, M in zip(ests, Ms)]
    JD = [np.zeros_like(D[0])] + [
        (ds[t][:, :, None] * np.einsum("kl,nlp->nkp", params.W, D[t - 1].reshape(N, H, -1))
         ).reshape(N, -1) for t in range(1, T)]
    return D, JD, Ms


def test_uoro_noise_accumulates_as_the_paper_says():
    """Exactly, over every sign pattern (B = 1, H = 2, T = 7):
    - at t = 1, E||ht tt^T - M_1||^2 = (H - 1) ||M_1||^2 (one rank-one sign estimate of G_1);
    - each step's fresh noise X_t = D_t - J_t D_{t-1} has mean zero given the past, so it is
      uncorrelated with the propagated old noise and the variances add:
          E||D_t||^2 = E||J_t D_{t-1}||^2 + E||X_t||^2;
    - so where the recurrence does not shrink it (orthogonal W, small inputs: J_t ~ W), the
      variance of the influence estimate grows with t: here strictly, and 4x relative to
      ||M_t||^2 by t = 7 (the paper's prediction that UORO's noise grows with T)."""
    spec = hg.Spec(output="all", bias=False)
    params = hg.init_params(spec, 1, 2, 1, seed=1, init="orthogonal")
    xs = 0.1 * np.random.default_rng(1).normal(size=(1, 7, 1))
    D, JD, Ms = _influence_errors(params, xs, spec)
    var = [float(np.mean(np.sum(d * d, axis=1))) for d in D]
    assert var[0] == pytest.approx((2 - 1) * float(np.sum(Ms[0] ** 2)), rel=1e-12)
    for t in range(1, len(D)):
        fresh = D[t] - JD[t]
        old = float(np.mean(np.sum(JD[t] ** 2, axis=1)))
        new = float(np.mean(np.sum(fresh ** 2, axis=1)))
        cross = float(np.mean(np.sum(JD[t] * fresh, axis=1)))
        assert abs(cross) <= 1e-12 * (old + new)
        assert var[t] == pytest.approx(old + new, rel=1e-12)
    assert all(b > a for a, b in zip(var, var[1:]))
    rel = [v / float(np.sum(M ** 2)) for v, M in zip(var, Ms)]
    assert rel[-1] > 4 * rel[0]


# ---- the metric set, online training, the long-sequence profile ------------------------------

def test_metric_set_against_the_exact_tools():
    from handgrad.research.estimators import measure
    spec = hg.Spec(activation="tanh", output="all")
    case = make_case(spec, 2, 12, 1, 3, 1, seed=2)
    rows = measure("t", case.params, case.xs, case.ys, spec,
                   ["bptt", "window:2", "chunks:4", "rtrl", "snap:1", "uoro", "artbp:0.3"],
                   seeds=8, h0=case.h0, min_seconds=0.0)
    by = {r.estimator: r for r in rows}
    sweep = hg.truncation_sweep(case.params, case.xs, case.ys, spec, h0=case.h0, ks=[2])
    assert by["bptt"].rel_bias == 0 and by["rtrl"].rel_bias <= TOL
    assert by["window:2"].rel_bias == pytest.approx(sweep.l2_error[0], rel=1e-9)
    assert by["window:2"].cosine == pytest.approx(sweep.cosine[0], rel=1e-12)
    for name in ("bptt", "window:2", "chunks:4", "rtrl", "snap:1"):
        assert by[name].seeds == 1 and by[name].rel_std == 0 and by[name].bias_se == 0
    for name in ("uoro", "artbp:0.3"):
        r = by[name]
        assert r.seeds == 8 and r.rel_std > 0 and r.bias_se == pytest.approx(r.rel_std / np.sqrt(8))
        assert r.rel_rmse == pytest.approx(np.hypot(r.rel_bias, r.rel_std))
    assert all(r.us_per_step > 0 and r.peak_kb > 0 for r in rows)
    with pytest.raises(ValueError, match="estimator"):
        measure("t", case.params, case.xs, case.ys, spec, ["nope"])


def test_online_training_learns_recall_with_rtrl_and_chunks_is_pytorch_loop():
    from handgrad.research.online import recall_stream, train_online
    from handgrad.train.optim import make_optimizer
    spec = hg.Spec(activation="tanh", output="all")
    p0 = hg.init_params(spec, 1, 8, 1, seed=0)
    run = train_online("rtrl", p0, spec, recall_stream(4, 2, seed=1), 3000,
                       make_optimizer("adam", 3e-3), report_every=500)
    assert run.loss[0] > 0.1 and run.loss[-1] < 0.02        # y_t = x_{t-2} learnt online
    # chunks:K is the detach-every-K loop: hg.loss_and_grads per chunk, one update each
    opt = make_optimizer("sgd", 0.1)
    got = train_online("chunks:3", p0, spec, recall_stream(2, 2, seed=4), 9, opt, report_every=9)
    stream = recall_stream(2, 2, seed=4)
    pairs = [next(stream) for _ in range(9)]
    p, h = p0, np.zeros((2, 8))
    for c in range(3):
        xs = np.stack([x for x, _ in pairs[3 * c:3 * c + 3]], axis=1)
        ys = np.stack([y for _, y in pairs[3 * c:3 * c + 3]], axis=1)
        _, g = hg.loss_and_grads(p, xs, ys, spec, h0=h)
        h = hg.predict(p, xs, spec, h0=h)[1][:, -1]
        p, _ = opt.update(p, hg.Params(*(None if a is None else a / 2 for a in g)), None)
    for a, b in zip(got.params.arrays().values(), p.arrays().values()):
        assert hg.rel_error(a, b) <= TOL
    with pytest.raises(ValueError, match="scheme"):
        train_online("window", p0, spec, recall_stream(1, 2), 10, opt)


@pytest.mark.parametrize("spec, sizes, block, L", [
    (hg.Spec(), (2, 40, 2, 3, 2), 7, 12),
    (hg.Spec(activation="sigmoid", bias=False, loss="cross_entropy", reduction="mean"),
     (3, 25, 2, 4, 3), 4, 24),
    (hg.Spec(reduction="mean", loss="squared"), (1, 30, 1, 3, 1), 64, 29),
])
def test_long_profile_equals_sweep_and_decay_profile(spec, sizes, block, L):
    from handgrad.research.longseq import array_source, long_profile
    c = make_case(spec, *sizes, seed=2)
    T = sizes[1]
    prof = long_profile(c.params, array_source(c.xs, c.ys), spec, T, max_lag=L,
                        ks=list(range(L + 1)), block=block, h0=c.h0)
    sweep = hg.truncation_sweep(c.params, c.xs, c.ys, spec, h0=c.h0, keep_grads=False)
    decay = hg.decay_profile(c.params, c.xs, c.ys, spec, h0=c.h0, max_lag=L)
    assert prof.loss == pytest.approx(sweep.loss, rel=1e-13)
    np.testing.assert_allclose(prof.bias, sweep.l2_error[prof.ks], rtol=0, atol=1e-13)
    np.testing.assert_allclose(prof.cosine, sweep.cosine[prof.ks], rtol=0, atol=1e-13)
    np.testing.assert_allclose(prof.dh_norm, decay.dh_norm, rtol=1e-12, atol=0)
    assert prof.max_steps_held <= block + L + 1 and prof.checkpoints == -(-T // block)
    # what lies beyond lag L is measured exactly: it is the bias of Window(L)
    assert prof.residual == pytest.approx(sweep.l2_error[L], rel=1e-9, abs=1e-15)
    assert prof.every == 1 and np.all(prof.bias_se == 0)


def test_long_profile_sampled_loss_terms_agree_with_the_exact_profile():
    """Every 8th loss term (random offset), 8 interleaved subsamples: each Window(k) bias within
    4 standard errors of the exact one, and the standard errors are informative (far below the
    biases they qualify where those are large); the decay profile within 15% over its first lags."""
    from handgrad.research.longseq import long_profile, recall_source
    spec = hg.Spec(activation="tanh", output="all", reduction="mean")
    params = hg.init_params(spec, 1, 6, 1, seed=3)
    src = recall_source(2, 3, seed=5)
    ks = [0, 1, 2, 4, 8, 16]
    exact = long_profile(params, src, spec, 3000, max_lag=40, ks=ks, block=512)
    est = long_profile(params, src, spec, 3000, max_lag=40, ks=ks, block=512, every=8, seed=1)
    assert est.loss == pytest.approx(exact.loss, rel=1e-12)
    assert est.grad_norm == pytest.approx(exact.grad_norm, rel=1e-12)   # g is exact either way
    assert np.all(np.abs(est.bias - exact.bias) <= 4 * est.bias_se + 1e-15)
    assert np.all(est.bias_se[:2] < 0.3 * exact.bias[:2])
    np.testing.assert_allclose(est.dh_norm[:6], exact.dh_norm[:6], rtol=0.15)
    with pytest.raises(ValueError, match="every"):
        long_profile(params, src, spec, 100, every=0)


def test_recall_source_is_consistent_and_long_profile_checks_its_input():
    from handgrad.research.longseq import long_profile, recall_source
    src = recall_source(2, 3, seed=1, chunk=5)
    xs, ys = src(0, 23)
    xs2, ys2 = src(7, 19)
    assert np.array_equal(xs[:, 7:19], xs2) and np.array_equal(ys[:, 7:19], ys2)
    assert np.array_equal(ys[:, 3:], xs[:, :-3]) and not ys[:, :3].any()
    spec = hg.Spec(output="all")
    p = hg.init_params(spec, 1, 3, 1)
    with pytest.raises(ValueError, match="output"):
        long_profile(p, src, hg.Spec(output="last"), 10)
    with pytest.raises(ValueError, match="must give"):
        long_profile(p, lambda lo, hi: src(lo, hi + 1), spec, 10, block=4)
    with pytest.raises(ValueError, match="T must"):
        long_profile(p, src, spec, 0)


# ---- the command ---------------------------------------------------------------------------

SMALL = ["--windows", "1", "--seeds", "2", "--steps", "200", "--hidden", "4", "--delay", "3",
         "--k", "1", "--noise-T", "5,20"]


def test_estimators_command_writes_table_plot_and_json(tmp_path, capsys):
    import json

    from handgrad.cli import main
    out = tmp_path / "run"
    assert main(["estimators", *SMALL, "--estimators", "bptt,window:1,tbptt:1,3,uoro,snap:1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[tutorial (init)]" in text and "[recall d=3 (RTRL-trained)]" in text
    assert "online training on delayed recall" in text
    assert (out / "estimators.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = json.loads((out / "estimators.json").read_text())
    names = [r["estimator"] for r in report["table"]]
    assert names == 3 * ["bptt", "window:1", "tbptt:1,3", "uoro", "snap:1"]
    assert report["uoro_noise"]["init"]["T"] == [5, 20]
    assert [r["scheme"] for r in report["online"]] == ["rtrl", "uoro", "snap:1", "window:1",
                                                       "window:3", "chunks:2", "chunks:6"]
    assert all(r["rel_bias"] == 0 for r in report["table"] if r["estimator"] == "bptt")
    assert (out / "estimators.csv").read_text().startswith("task,estimator,rel_bias")
    # the outputs exist now: refused without --force, before any work
    assert main(["estimators", *SMALL, "--no-train", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_estimators_command_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-m", "handgrad.cli", "estimators", "--k", "6",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--k must be below --delay" in lines[0]
