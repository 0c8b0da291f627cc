"""Correct GRU and LSTM candidates with the round-off of real code: the oracle's precision tests.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps.

`roundoff_gated(spec, dtype)` is a correct candidate for every GRU (reset after or before) and
LSTM spec (every loss, output, reduction and truncation; with or without head and biases),
written the way PyTorch's autograd and hand-written tutorials differ from the hand BPTT:

- the GRU step is PyTorch's h_t = n_t + z_t (h_{t-1} - n_t) (or, with `keep_form=True`, the
  textbook (1 - z_t) n_t + z_t h_{t-1} with 1 - z_t by a subtraction), and its backward pass is
  what autograd derives from that expression: dn = dh - z dh, dz = dh (h_{t-1} - n), so 1 - z
  is never computed as sigmoid(-a_z);
- every gate derivative comes from the gate's output: s (1 - s), 1 - t^2;
- sigmoid and tanh are up to `ulps` ulps off (random direction, or all up with `coherent`), as
  in `gallery.roundoff`;
- sums run in another order: the input products x_t W_ih^T and the recurrent ones h W_hh^T
  apart, per step, gradients accumulated one step at a time backwards, dV and dc per sample;
- `dtype` is the precision it computes in (float64 or float32).
"""
from __future__ import annotations

import numpy as np

from ..spec import segments
from ..tolerances import TOLERANCES
from .roundoff import _rng, tutorial_loss, unit


def roundoff_gated(spec, dtype=np.float64, ulps=None, coherent: bool = False,
                   keep_form: bool = False):
    """A correct GRU or LSTM candidate for `spec` computing in `dtype` (see the module
    docstring)."""
    if spec.cell not in ("gru", "lstm"):
        raise ValueError(f"spec.cell must be 'gru' or 'lstm', got {spec.cell!r}")
    ulps = int(TOLERANCES["ulps"]) if ulps is None else int(ulps)
    dtype = np.dtype(dtype)
    one = dtype.type(1)

    def candidate(params, xs, ys, h0):
        rng = _rng(xs, ys, *(h0 if isinstance(h0, tuple) else (h0,)),
                   *params.arrays().values())
        W_ih, W_hh, b_ih, b_hh, V, c = (None if p is None else np.asarray(p, dtype)
                                        for p in params)
        xs = np.asarray(xs, dtype)
        B, T, _ = xs.shape
        H = W_hh.shape[1]

        def act(kind, a):
            return unit(kind, a, dtype, ulps, rng, coherent)

        lstm = spec.cell == "lstm"
        zeros = np.zeros((B, H), dtype)
        if lstm:
            h, cs = ((zeros, zeros) if h0 is None
                     else (np.asarray(h0[0], dtype), np.asarray(h0[1], dtype)))
            cs = [cs]
        else:
            h = zeros if h0 is None else np.asarray(h0, dtype)
        hs, saved = [h], []
        for t in range(T):                                   # forward, one step at a time
            x = xs[:, t]
            gi = x @ W_ih.T if b_ih is None else x @ W_ih.T + b_ih
            if lstm:
                a = gi + h @ W_hh.T + (0 if b_hh is None else b_hh)
                i, f, o = (act("sigmoid", a[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
                g = act("tanh", a[:, 2 * H:3 * H])
                cell = f * cs[-1] + i * g                    # c_t = f c_{t-1} + i g
                tc = act("tanh", cell)
                h = o * tc                                   # h_t = o tanh(c_t)
                cs.append(cell)
                saved.append((i, f, g, o, tc))
            else:
                r = act("sigmoid", gi[:, :H] + h @ W_hh[:H].T + (0 if b_hh is None else b_hh[:H]))
                z = act("sigmoid", gi[:, H:2 * H] + h @ W_hh[H:2 * H].T
                        + (0 if b_hh is None else b_hh[H:2 * H]))
                bn = 0 if b_hh is None else b_hh[2 * H:]
                if spec.gru_reset == "after":
                    inner = h @ W_hh[2 * H:].T + bn          # W_hn h + b_hn
                    n = act("tanh", gi[:, 2 * H:] + r * inner)
                else:
                    inner = r * h                            # r * h
                    n = act("tanh", gi[:, 2 * H:] + inner @ W_hh[2 * H:].T + bn)
                h = (one - z) * n + z * h if keep_form else n + z * (h - n)
                saved.append((r, z, n, inner))
            hs.append(h)
        steps = list(range(1, T + 1)) if spec.output == "all" else [T]
        head = (lambda v: v) if V is None else (lambda v: v @ V.T + (0 if c is None else c))
        os = np.stack([head(hs[t]) for t in steps], axis=1)
        ys_ = ys if spec.loss == "cross_entropy" else np.asarray(ys, dtype)
        loss, dos = tutorial_loss(spec, dtype, os, ys_ if spec.output == "all" else ys_[:, None])
        g = {n: np.zeros(p.shape, dtype) for n, p in params.arrays().items()}
        g["h0"] = np.zeros((B, H), dtype)
        if lstm:
            g["c0"] = np.zeros((B, H), dtype)
        if V is not None:
            for k in range(B):                               # o_t = V h_t + c, per sample
                for j, t in enumerate(steps):
                    g["V"] += np.outer(dos[k, j], hs[t][k])
                    if c is not None:
                        g["c"] += dos[k, j]
        do_at = {t: dos[:, j] if V is None else dos[:, j] @ V for j, t in enumerate(steps)}

        def add(da_in, da_rec, t, rec_input):
            """a_t = W_ih x_t + b_ih + W_hh (rec_input) + b_hh: the weight gradients."""
            g["W_ih"] += da_in.T @ xs[:, t - 1]
            g["W_hh"] += da_rec.T @ rec_input
            if b_ih is not None:
                g["b_ih"] += da_in.sum(axis=0)
                g["b_hh"] += da_rec.sum(axis=0)

        for seg in reversed(segments(spec.truncation, T, spec.output)):
            dh = np.zeros((B, H), dtype)                     # dL/dh_t (and dL/dc_t) from t + 1
            dc = np.zeros((B, H), dtype)
            for t in range(seg.last, seg.cut, -1):
                if t >= seg.first:
                    dh = dh + do_at[t]                       # loss term t
                h_prev = hs[t - 1]
                if lstm:
                    i, f, gg, o, tc = saved[t - 1]
                    do = dh * tc                             # h = o tanh(c)
                    dc = dc + dh * o * (one - tc * tc)       # tanh' from its output
                    da = np.concatenate([dc * gg * i * (one - i),     # c = f c_prev + i g
                                         dc * cs[t - 1] * f * (one - f),
                                         dc * i * (one - gg * gg),
                                         do * o * (one - o)], axis=1)
                    add(da, da, t, h_prev)
                    dc = dc * f                              # carry to c_{t-1}
                    dh = da @ W_hh                           # carry to h_{t-1}
                    continue
                r, z, n, inner = saved[t - 1]
                if keep_form:                                # h = (1 - z) n + z h_prev
                    dn, dz = dh * (one - z), dh * h_prev - dh * n
                else:                                        # h = n + z (h_prev - n)
                    dn, dz = dh - dh * z, dh * (h_prev - n)
                dprev = dh * z
                da_n = dn * (one - n * n)                    # tanh' from its output
                da_z = dz * z * (one - z)                    # sigmoid' from its output
                if spec.gru_reset == "after":
                    da_r = da_n * inner * r * (one - r)      # a_n = ... + r (W_hn h + b_hn)
                    d_rec = np.concatenate([da_r, da_z, da_n * r], axis=1)
                    add(np.concatenate([da_r, da_z, da_n], axis=1), d_rec, t, h_prev)
                    dh = dprev + d_rec @ W_hh                # carry to h_{t-1}
                else:
                    d_rh = da_n @ W_hh[2 * H:]               # a_n = ... + W_hn (r h)
                    da_r = d_rh * h_prev * r * (one - r)
                    da_in = np.concatenate([da_r, da_z, da_n], axis=1)
                    g["W_ih"] += da_in.T @ xs[:, t - 1]
                    g["W_hh"][:2 * H] += da_in[:, :2 * H].T @ h_prev
                    g["W_hh"][2 * H:] += da_n.T @ inner
                    if b_ih is not None:
                        g["b_ih"] += da_in.sum(axis=0)
                        g["b_hh"] += da_in.sum(axis=0)
                    dh = dprev + d_rh * r + da_in[:, :2 * H] @ W_hh[:2 * H]
            if seg.cut == 0:
                g["h0"] += dh                                # reached s_0
                if lstm:
                    g["c0"] += dc
        return np.asarray(loss, dtype)[()], g

    candidate.__name__ = f"roundoff_{spec.cell}_{dtype.name}"
    return candidate
