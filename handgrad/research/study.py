"""The truncation study behind `handgrad truncation`: bias curves, decay and Jacobian facts for a
model on its data (any cell), and training the tutorial task under several truncations (the
Elman cell of the tutorial).

Size letters: B windows, T steps, D inputs, H hidden units, O outputs, K truncations.

Compute is counted in backpropagated steps: the number of steps t whose dL/da_t a gradient
computes (the forward pass, T steps per window, is the same for every scheme). For the tutorial's
many-to-one loss: full BPTT T, Window(k) k + 1, Chunks(k) the length of the last chunk (k when k
divides T: it equals Window(k - 1) there),
ARTBP K + 1 for K passes before the first cut.
"""
from __future__ import annotations

import io
import json
import math
import time
from typing import NamedTuple

import numpy as np

from ..params import Params
from ..spec import Spec, segments
from .artbp import artbp_grads, sample_passes, tradeoff_prepared
from .decay import adaptive_k, facts_from, profile_prepared
from .sweep import prepare, sweep_prepared

TOLS = (0.1, 0.01, 0.001)                   # default bias tolerances for the adaptive k
STUDY_SCHEMES = ("full", "window:0", "window:2", "window:5", "window:10", "chunks:10",
                 "artbp:0.1")                # what --train-study trains, same seed for all


class Stage(NamedTuple):
    """Everything measured for one model on one data set."""

    name: str
    sweep: object               # TruncationSweep
    decay: object               # DecayProfile
    jacobian: object            # JacobianFacts
    adaptive: dict              # tol -> k
    artbp: list                 # TradeoffRow (many-to-one) or []
    seconds: float


def analyse(name, params, xs, ys, spec, h0=None, tols=TOLS, ks=None) -> Stage:
    """Sweep, decay profile, Jacobian facts, adaptive k and (many-to-one) ARTBP trade-off."""
    t0 = time.perf_counter()
    prep = prepare(params, xs, ys, spec, h0)                       # one forward pass for all
    sweep = sweep_prepared(prep, ks=ks, keep_grads=False)
    prof = profile_prepared(prep)
    facts = facts_from(prep.params, prep.spec, prep.fwd)
    adaptive = {float(t): adaptive_k(prof, float(t)) for t in tols}
    every = sweep if ks is None else None
    trade = tradeoff_prepared(prep, sweep=every) if prep.spec.output == "last" else []
    return Stage(name, sweep, prof, facts, adaptive, trade, time.perf_counter() - t0)


def table_rows(stage: Stage) -> list[dict]:
    """One row per k: overall and per-parameter errors, the bound and the rate's estimate."""
    sw, prof = stage.sweep, stage.decay
    bound = prof.bias_bound(sw.ks)
    est = prof.estimated_bias(sw.ks)
    rows = []
    for i, k in enumerate(sw.ks):
        row = {"stage": stage.name, "k": int(k), "rel_error": float(sw.rel_error[i]),
               "cosine": float(sw.cosine[i]), "bias": float(sw.l2_error[i]),
               "bias_bound": float(bound[i]), "bias_estimate": float(est[i])}
        for name in sw.per_param:
            if name not in ("V", "c"):                              # never truncated
                row[f"rel_error_{name}"] = float(sw.per_param[name].rel_error[i])
                row[f"bias_{name}"] = float(sw.per_param[name].l2_error[i])
        rows.append(row)
    return rows


def stage_summary(stage: Stage) -> dict:
    prof = stage.decay
    return {
        "loss": stage.sweep.loss,
        "rate": prof.rate, "rate_fit_scale": prof.scale,
        "dh_norm": prof.dh_norm.tolist(), "piece_norm": prof.piece_norm.tolist(),
        "grad_norm": prof.grad_norm,
        "jacobian": stage.jacobian.as_dict(),
        "adaptive_k": {f"{t:g}": k for t, k in stage.adaptive.items()},
        "adaptive_k_measured_bias": {f"{t:g}": float(stage.sweep.l2_error[min(k, len(stage.sweep.ks) - 1)])
                                     for t, k in stage.adaptive.items()},
        "artbp": [r._asdict() for r in stage.artbp],
        "seconds": stage.seconds,
    }


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def to_json(obj) -> bytes:
    """JSON with non-finite numbers written as null (strict JSON)."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v
    return (json.dumps(clean(obj), indent=1, default=_json_default) + "\n").encode()


def to_csv(rows: list[dict]) -> bytes:
    import csv
    fields = []
    for r in rows:
        fields += [f for f in r if f not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({f: (f"{v:.6g}" if isinstance(v, float) else v) for f, v in r.items()})
    return buf.getvalue().encode()


SHOWN_KS = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40)


def format_table(stages: list[Stage]) -> str:
    """The printed table: a few k per stage, then the decay facts."""
    lines = []
    for st in stages:
        sw, prof, jf = st.sweep, st.decay, st.jacobian
        T = prof.T
        if math.isnan(jf.jacobian_bound):                 # a gated cell: no a-priori bound
            facts = f"sigma_max(W_hh) = {jf.sigma_max_W:.3g}"
        else:
            facts = (f"sigma_max(W) x max act' = {jf.sigma_max_W:.3g} x {jf.max_derivative:g} = "
                     f"{jf.jacobian_bound:.3g}; saturated {100 * jf.saturated_fraction:.1f}%")
        lines.append(f"[{st.name}] loss {sw.loss:.4g}; gradient norm {prof.grad_norm:.3g}; "
                     f"decay rate {prof.rate:.3g} per step; {facts}; largest ||ds_t/ds_(t-1)||_2 "
                     f"{jf.jacobian_max:.3g} (of {jf.pairs} (t, b) measured)")
        lines.append(f"  {'k':>3} {'rel error':>10} {'cosine':>9} {'bias':>10} {'bound':>10} "
                     f"{'estimate':>10}")
        bound = prof.bias_bound(sw.ks)
        est = prof.estimated_bias(sw.ks)
        shown = sorted({k for k in SHOWN_KS if k < T} | {T - 1})
        for i, k in enumerate(sw.ks):
            if int(k) in shown:
                lines.append(f"  {int(k):>3} {sw.rel_error[i]:>10.3g} {sw.cosine[i]:>9.6f} "
                             f"{sw.l2_error[i]:>10.3g} {bound[i]:>10.3g} {est[i]:>10.3g}")
        ad = ", ".join(f"bias <= {t:g}: k = {k}" for t, k in st.adaptive.items())
        lines.append(f"  adaptive k (smallest k whose bound meets the tolerance): {ad}")
        for r in st.artbp:
            lines.append(f"  ARTBP c = {r.cut_prob:<5g} {r.expected_steps:6.2f} steps expected: "
                         f"relative std {r.rel_std:.3g}  |  Window({r.window_k}): bias "
                         f"{r.window_rel_bias:.3g}")
    return "\n".join(lines)


def _figure(nrows: int, ncols: int, size, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=dpi)        # fixed margins: a constrained layout costs seconds
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.86, wspace=0.25)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _plain_log_labels(*axes):
    """Tick labels like 1e-05 on log axes: the default 10^n labels go through mathtext, which
    costs most of the drawing time."""
    from matplotlib.ticker import LogFormatter
    for ax in axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_major_formatter(LogFormatter(labelOnlyBase=True))
                axis.set_minor_formatter(LogFormatter(labelOnlyBase=True))


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _positive(v):
    v = np.asarray(v, dtype=float)
    return np.where(v > 0, v, np.nan)


def plot_stages(stages: list[Stage], title: str, size=(11, 4.2), dpi: int = 100) -> bytes:
    """Left: bias ||g_k - g|| / ||g|| against k, per parameter (log scale), with the bound.
    Right: ||dL/dh_{t-j}|| against the lag j with the fitted geometric rate."""
    fig, ax = _figure(1, 2, size, dpi)
    left, right = ax[0]
    styles = ["-", "--", ":", "-."]
    for i, st in enumerate(stages):
        ls = styles[i % len(styles)]
        sw = st.sweep
        left.plot(sw.ks, _positive(sw.l2_error), ls, color="k", label=f"{st.name}: all parameters")
        truncated = [n for n in sw.per_param if n not in ("V", "c", "h0")]
        for j, name in enumerate(truncated):
            left.plot(sw.ks, _positive(sw.per_param[name].l2_error), ls, color=f"C{j}",
                      label=f"{st.name}: {name}")
        left.plot(sw.ks, _positive(st.decay.bias_bound(sw.ks)), ls, color="tab:purple", alpha=0.6,
                  label=f"{st.name}: bound")
        prof = st.decay
        right.plot(prof.lags, _positive(prof.dh_norm), "o", ms=3, color=f"C{i}",
                   label=f"{st.name}: measured")
        if np.isfinite(prof.rate):
            right.plot(prof.lags, prof.scale * prof.rate ** prof.lags.astype(float), ls,
                       color=f"C{i}", label=f"{st.name}: fit, rate {prof.rate:.3g}")
    # below about 1e-16 of ||g||, g_k - g is float64 round-off of g itself, not bias
    left.axhline(np.finfo(float).eps, color="grey", lw=0.8, ls=":")
    left.text(0, np.finfo(float).eps * 3, "float64 round-off", color="grey", fontsize=7)
    left.set(yscale="log", xlabel="k (Window(k))", ylabel="||g_k - g|| / ||g||",
             title="truncation bias")
    left.set_ylim(bottom=1e-18)
    right.set(yscale="log", xlabel="lag j", ylabel="||dL/ds_{t-j}|| (the whole state)",
              title="gradient decay")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    _plain_log_labels(left, right)
    fig.suptitle(title)
    return png_bytes(fig)


# ---- training under truncation -------------------------------------------------------------

class SchemeRun(NamedTuple):
    scheme: str
    val_loss: list            # per epoch, epoch 0 = initialisation
    train_loss: list
    backprop_steps: list      # cumulative, per epoch
    seconds: float


def parse_scheme(text: str):
    """'full', 'window:K', 'chunks:K' or 'artbp:C' (C the per-step cut probability)."""
    from ..spec import parse_truncation
    t = text.strip().lower()
    if t.startswith("artbp:"):
        try:
            c = float(t.split(":", 1)[1])
        except ValueError:
            c = math.nan
        if not 0 < c < 1:
            raise ValueError(f"scheme 'artbp:C' needs a cut probability C in (0, 1), got {text!r}")
        return ("artbp", c)
    return ("trunc", parse_truncation(t))


def steps_backpropagated(truncation, T: int) -> int:
    """Steps whose dL/da_t a many-to-one gradient computes under `truncation`."""
    (seg,) = segments(truncation, T, "last")       # one loss term: one sweep, steps cut+1..T
    return T - seg.cut


def train_scheme(data, config, scheme: str, seed: int = 0) -> SchemeRun:
    """Train `data` (a handgrad.train Dataset) as `config` (a TrainConfig) says, with the gradient
    of `scheme`. The loop mirrors handgrad.train.train (same order, optimizer, clipping); for a
    deterministic truncation it gives the same history (tested)."""
    from ..bptt import loss_and_grads
    from ..params import init_params
    from ..train.loop import evaluate
    from ..train.optim import clip, make_optimizer
    kind, value = parse_scheme(scheme)
    t0 = time.perf_counter()
    base = config.spec()
    spec = Spec(**{**base.__dict__, "truncation": value if kind == "trunc" else None})
    xs, ys = data.train.xs, data.train.ys
    n, T, D = xs.shape
    params = init_params(spec, D, config.hidden, ys.shape[1], seed=config.seed, init=config.init,
                         scale=config.init_scale)
    opt = make_optimizer(config.optimizer, config.lr)
    state = opt.init(params)
    rng = np.random.default_rng(seed)
    order_rng = np.random.default_rng(config.seed)
    probs = np.full(T, value) if kind == "artbp" else None
    val = [evaluate(params, spec, data.val, data).loss]
    tr = [evaluate(params, spec, data.train, data).loss]
    steps, total = [0], 0
    for _ in range(config.epochs):
        order = order_rng.permutation(n) if config.shuffle else np.arange(n)
        for lo in range(0, n, config.batch_size):
            idx = order[lo:lo + config.batch_size]
            if kind == "artbp":
                passes = sample_passes(rng, probs)
                _, grads, _ = artbp_grads(params, xs[idx], ys[idx], spec, passes, probs)
                K = T if passes.all() else int(passes[::-1].argmin())
                total += min(K + 1, T)
            else:
                _, grads = loss_and_grads(params, xs[idx], ys[idx], spec)
                total += steps_backpropagated(value, T)
            if len(idx) > 1:
                grads = Params(*(None if g is None else g / len(idx) for g in grads))
            new, state = opt.update(params, clip(grads, config.clip), state)
            if not all(np.all(np.isfinite(a)) for a in new.arrays().values()):
                break                                      # diverged: keep the last good epoch
            params = new
        val.append(evaluate(params, spec, data.val, data).loss)
        tr.append(evaluate(params, spec, data.train, data).loss)
        steps.append(total)
    return SchemeRun(scheme, val, tr, steps, time.perf_counter() - t0)


def plot_study(runs: list[SchemeRun], title: str, size=(11, 4.2), dpi: int = 100) -> bytes:
    """Validation loss against epochs and against cumulative backpropagated steps (from epoch 1:
    the initial loss costs no steps)."""
    fig, ax = _figure(1, 2, size, dpi)
    left, right = ax[0]
    for i, r in enumerate(runs):
        style = "--" if r.scheme.startswith("artbp") else "-"
        left.plot(range(len(r.val_loss)), _positive(r.val_loss), style, color=f"C{i}", label=r.scheme)
        right.plot(r.backprop_steps[1:], _positive(r.val_loss[1:]), style, color=f"C{i}",
                   label=r.scheme)
    left.set(yscale="log", xlabel="epoch", ylabel="validation loss (1/2 sq. error per window)")
    right.set(yscale="log", xscale="log", xlabel="backpropagated steps (cumulative)",
              ylabel="validation loss")
    left.legend(fontsize=7)
    _plain_log_labels(left, right)
    fig.suptitle(title)
    return png_bytes(fig)
