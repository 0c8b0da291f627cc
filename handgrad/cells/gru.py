"""The GRU, in PyTorch's layout and gate order (blocks r, z, n of W_ih, W_hh, b_ih, b_hh):

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))      reset "after" (PyTorch, cuDNN)
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)      reset "before" (Cho et al., d2l)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

1 - z_t is computed as sigmoid(-a_z), not by a subtraction: as the update gate closes (z_t -> 1)
1 - z_t rounds to 0 while its true value, e^{-a_z}, still carries n_t's share of h_t.

Size letters: T steps, B batch, H hidden units, n steps handled at once. State s_t = h_t (S = H),
G = 3; P_t = W_ih x_t + b_ih holds the input side of all three blocks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nonlin import act_derivative, act_function
from . import Cell, matmul_into, outer_sum


class Cache(NamedTuple):
    gates: np.ndarray    # (T, B, 3H) r_t, z_t, n_t
    deriv: np.ndarray    # (T, B, 3H) sigmoid'(a_r), sigmoid'(a_z), tanh'(a_n)
    inner: np.ndarray    # (T, B, H)  after: W_hn h_{t-1} + b_hn; before: r_t * h_{t-1}
    keep: np.ndarray     # (T, B, H)  1 - z_t = sigmoid(-a_z), exact as z_t -> 1


class GRU(Cell):
    G = 3
    name = "gru"

    def __init__(self, reset: str = "after"):
        self.reset = reset
        self.own_dR = reset == "after"     # dL/dR_t's candidate block is da_n * r_t, not da_n

    def run(self, w, P, s0, derivative: bool = True):
        """States (T + 1, B, H) and a `Cache`; P (T, B, 3H) becomes the pre-activations."""
        T, B, H3 = P.shape
        H = H3 // 3
        complex_ = np.iscomplexobj(P)
        sig, tanh = act_function("sigmoid", complex_), act_function("tanh", complex_)
        hs = np.empty((T + 1, B, H), P.dtype)
        hs[0] = s0
        gates = np.empty((T, B, 3 * H), P.dtype)
        inner = np.empty((T, B, H), P.dtype)
        keep = np.empty((T, B, H), P.dtype)
        after = self.reset == "after"
        W_n = w.W_rec[2 * H:]
        WT = np.ascontiguousarray((w.W_rec if after else w.W_rec[:2 * H]).T)   # (H, 3H | 2H)
        b_h = None if w.b_rec is None else (w.b_rec if after else w.b_rec[:2 * H])
        b_n = None if w.b_rec is None else w.b_rec[2 * H:]
        rec = np.empty((B, WT.shape[1]), P.dtype)
        tmp = np.empty((B, H), P.dtype)
        dot, add, multiply = np.dot, np.add, np.multiply
        with np.errstate(over="ignore"):
            for t in range(T):
                h_prev, a, g = hs[t], P[t], gates[t]
                dot(h_prev, WT, out=rec)                           # W_h h_{t-1} (+ b_h)
                if b_h is not None:
                    add(rec, b_h, out=rec)
                a_rz, a_n = a[:, :2 * H], a[:, 2 * H:]
                add(a_rz, rec[:, :2 * H], out=a_rz)                # a_r, a_z
                sig(a_rz, out=g[:, :2 * H])                        # r_t, z_t
                r, z = g[:, :H], g[:, H:2 * H]
                np.negative(a[:, H:2 * H], out=keep[t])
                sig(keep[t], out=keep[t])                          # 1 - z_t, without cancelling
                if after:
                    inner[t] = rec[:, 2 * H:]                      # W_hn h_{t-1} + b_hn
                    multiply(r, inner[t], out=tmp)
                    add(a_n, tmp, out=a_n)                         # a_n = ... + r * (...)
                else:
                    multiply(r, h_prev, out=inner[t])              # r_t * h_{t-1}
                    dot(inner[t], W_n.T, out=tmp)
                    add(a_n, tmp, out=a_n)                         # a_n = ... + W_hn (r h)
                    if b_n is not None:
                        add(a_n, b_n, out=a_n)
                n = tanh(a_n, out=g[:, 2 * H:])                    # n_t
                h = hs[t + 1]
                multiply(keep[t], n, out=h)                        # h_t = (1 - z) n + z h_{t-1}
                multiply(z, h_prev, out=tmp)
                add(h, tmp, out=h)
        if not derivative:
            return hs, None
        act_derivative("sigmoid", P[..., :2 * H], out=P[..., :2 * H])
        act_derivative("tanh", P[..., 2 * H:], out=P[..., 2 * H:])
        return hs, Cache(gates, P, inner, keep)

    def back_into(self, w, cache, states, lo: int, hi: int, ds, dP, ds_prev=None, dR=None):
        H = ds.shape[-1]
        h_prev = states[lo:hi]
        g, d = cache.gates[lo:hi], cache.deriv[lo:hi]        # d may be dP itself: each block
        r, z, n = g[..., :H], g[..., H:2 * H], g[..., 2 * H:]  # reads its derivative first
        da_r, da_z, da_n = dP[..., :H], dP[..., H:2 * H], dP[..., 2 * H:]
        tmp = self._scratch("tmp", ds.shape)
        np.multiply(ds, cache.keep[lo:hi], out=tmp)        # h = (1 - z) n + z h_prev: dn
        np.multiply(tmp, d[..., 2 * H:], out=da_n)         # n = tanh(a_n)
        dz = tmp
        np.subtract(h_prev, n, out=dz)                     # dz = dh (h_prev - n)
        dz *= ds
        np.multiply(dz, d[..., H:2 * H], out=da_z)         # z = sigmoid(a_z)
        rec = self._scratch("rec", ds.shape)
        if self.reset == "after":
            dr = tmp
            np.multiply(da_n, cache.inner[lo:hi], out=dr)  # a_n = ... + r * (W_hn h_prev + b_hn)
            np.multiply(dr, d[..., :H], out=da_r)          # r = sigmoid(a_r)
            dR[..., :2 * H] = dP[..., :2 * H]
            np.multiply(da_n, r, out=dR[..., 2 * H:])      # W_hn h_prev + b_hn, times r
            if ds_prev is not None:                        # carry to h_prev: direct + via W_hh
                matmul_into(dR, w.W_rec, rec)
                np.multiply(ds, z, out=ds_prev)
                ds_prev += rec
            return dP, dR, ds_prev
        d_rh = self._scratch("d_rh", ds.shape)
        matmul_into(da_n, w.W_rec[2 * H:], d_rh)           # a_n = ... + W_hn (r * h_prev)
        np.multiply(d_rh, h_prev, out=tmp)
        np.multiply(tmp, d[..., :H], out=da_r)             # r = sigmoid(a_r)
        if ds_prev is not None:                            # direct + via r h_prev + via W_hr, W_hz
            matmul_into(dP[..., :2 * H], w.W_rec[:2 * H], rec)
            np.multiply(d_rh, r, out=tmp)
            np.multiply(ds, z, out=ds_prev)
            ds_prev += tmp
            ds_prev += rec
        return dP, None, ds_prev

    def step_back(self, w, cache, states, t: int, ds, dP, ds_prev=None, dR=None):
        """`back` of the one step t, on (B, S) and (B, G H) arrays."""
        self.back_into(w, cache, states, t - 1, t, ds[None], dP[None],
                  None if ds_prev is None else ds_prev[None], None if dR is None else dR[None])

    def recurrent_grads(self, w, cache, states, dR, lo: int):
        H = states.shape[-1]
        db = dR.sum(axis=tuple(range(dR.ndim - 1))) if w.b_rec is not None else None
        if self.reset == "after":
            return outer_sum(dR, states[lo:-1]), db        # dW_hh = sum_t dR_t h_{t-1}^T
        dW = np.concatenate([outer_sum(dR[..., :2 * H], states[lo:-1]),    # r, z: h_{t-1}
                             outer_sum(dR[..., 2 * H:], cache.inner[lo:])])  # n: r_t * h_{t-1}
        return dW, db
