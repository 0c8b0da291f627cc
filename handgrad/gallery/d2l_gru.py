"""Correct, in the style of Dive into Deep Learning's GRU from scratch (reset gate applied before
the product, Cho et al. 2014), with its backward pass written by hand in numpy, and one classic
GRU mistake switched on at a time. Written here from the equations.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

Its layout: one (D, H) input matrix, one (H, H) recurrent matrix and one bias per gate,

    Z = sigmoid(X W_xz + H W_hz + b_z)          R = sigmoid(X W_xr + H W_hr + b_r)
    H~ = tanh(X W_xh + (R * H) W_hh + b_h)      H = Z * H + (1 - Z) * H~

and an output layer Y = H W_hq + b_q. In PyTorch's layout (handgrad.GatedParams, blocks r, z, n)
W_ih = [W_xr; W_xz; W_xh]^T, W_hh = [W_hr; W_hz; W_hh]^T, and each bias b_g is b_ih's block plus
b_hh's (their gradients are both db_g). Check it with `Spec(cell="gru", gru_reset="before")`.
"""
from __future__ import annotations

import numpy as np

from ._common import squared_loss, supported

GRU_MISTAKES = {
    "dz_sign": "dZ = dH (H~ - H_prev) instead of dH (H_prev - H~)",
    "direct_path_dropped": "dH_prev misses Z * dH, the direct path of H = Z * H_prev + ...",
    "reset_not_in_carry": "dH_prev through (R * H_prev) W_hh is not multiplied by R",
    "candidate_derivative_from_h": "tanh'(a) of the candidate taken from the new state, 1 - H^2, "
                                   "instead of 1 - H~^2",
    "update_gate_with_reset_derivative": "the update gate's sigmoid' taken from R instead of Z",
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def d2l_gru(spec, mistake=None):
    """A candidate for `Spec(cell="gru", gru_reset="before")` with an output head (squared losses,
    full BPTT), with `mistake` (a key of GRU_MISTAKES) or none."""
    supported(spec)
    if spec.cell != "gru" or spec.gru_reset != "before" or not spec.head:
        raise ValueError("d2l_gru is a GRU with the reset gate before the product and an output "
                         f"head: Spec(cell='gru', gru_reset='before'), got {spec}")
    if mistake is not None and mistake not in GRU_MISTAKES:
        raise ValueError(f"mistake must be None or one of {sorted(GRU_MISTAKES)}, got {mistake!r}")

    def candidate(params, xs, ys, h0):
        B, T, _ = xs.shape
        H = params.W_hh.shape[1]
        # d2l's layout from PyTorch's: (D, H) / (H, H) per gate, one bias per gate
        W_xr, W_xz, W_xh = (params.W_ih[k * H:(k + 1) * H].T for k in range(3))
        W_hr, W_hz, W_hh = (params.W_hh[k * H:(k + 1) * H].T for k in range(3))
        zero = np.zeros(3 * H)
        bias = (zero if params.b_ih is None else params.b_ih) + \
            (zero if params.b_hh is None else params.b_hh)
        b_r, b_z, b_h = bias[:H], bias[H:2 * H], bias[2 * H:]
        W_hq, b_q = params.V.T, (0 if params.c is None else params.c)
        hs, Rs, Zs, Hts = [np.zeros((B, H)) if h0 is None else h0], [], [], []
        for t in range(T):                                   # forward, d2l's equations
            X, Hp = xs[:, t], hs[-1]
            Z = _sigmoid(X @ W_xz + Hp @ W_hz + b_z)
            R = _sigmoid(X @ W_xr + Hp @ W_hr + b_r)
            Ht = np.tanh(X @ W_xh + (R * Hp) @ W_hh + b_h)
            hs.append(Z * Hp + (1 - Z) * Ht)
            Rs.append(R)
            Zs.append(Z)
            Hts.append(Ht)
        states = np.stack(hs[1:], axis=1)                    # (B, T, H)
        used = states if spec.output == "all" else states[:, -1:]
        loss, dY = squared_loss(used @ W_hq + b_q, ys if spec.output == "all" else ys[:, None],
                                spec)
        g = {name: np.zeros_like(a) for name, a in (("xr", W_xr), ("xz", W_xz), ("xh", W_xh),
                                                    ("hr", W_hr), ("hz", W_hz), ("hh", W_hh))}
        db = np.zeros(3 * H)
        dH_out = np.zeros((B, T, H))
        dH_out[:, T - dY.shape[1]:] = dY @ W_hq.T            # Y = H W_hq + b_q
        dHn = np.zeros((B, H))
        for t in range(T - 1, -1, -1):                       # backward through time
            X, Hp, R, Z, Ht = xs[:, t], hs[t], Rs[t], Zs[t], Hts[t]
            dH = dH_out[:, t] + dHn
            dZ = dH * ((Ht - Hp) if mistake == "dz_sign" else (Hp - Ht))   # H = Z Hp + (1-Z) H~
            dHt = dH * (1 - Z)
            tanh_grad = 1 - (hs[t + 1] ** 2 if mistake == "candidate_derivative_from_h"
                             else Ht * Ht)
            da_h = dHt * tanh_grad                           # H~ = tanh(a_h)
            dRH = da_h @ W_hh.T                              # a_h = ... + (R * Hp) W_hh
            da_r = dRH * Hp * R * (1 - R)                    # R = sigmoid(a_r)
            gate = R if mistake == "update_gate_with_reset_derivative" else Z
            da_z = dZ * gate * (1 - gate)                    # Z = sigmoid(a_z)
            for name, da, inp in (("xr", da_r, X), ("xz", da_z, X), ("xh", da_h, X),
                                  ("hr", da_r, Hp), ("hz", da_z, Hp), ("hh", da_h, R * Hp)):
                g[name] += inp.T @ da
            db += np.concatenate([da_r, da_z, da_h], axis=1).sum(axis=0)
            dHn = da_r @ W_hr.T + da_z @ W_hz.T + dRH * (1 if mistake == "reset_not_in_carry"
                                                         else R)
            if mistake != "direct_path_dropped":
                dHn = dHn + dH * Z
        grads = {"W_ih": np.concatenate([g["xr"].T, g["xz"].T, g["xh"].T]),
                 "W_hh": np.concatenate([g["hr"].T, g["hz"].T, g["hh"].T]),
                 "V": dY.reshape(-1, dY.shape[-1]).T @ used.reshape(-1, H), "h0": dHn}
        if params.b_ih is not None:
            grads.update(b_ih=db, b_hh=db, c=dY.sum(axis=(0, 1)))
        return loss, grads

    candidate.__name__ = f"d2l_gru_{mistake}" if mistake else "d2l_gru"
    return candidate
