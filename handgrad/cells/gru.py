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
from . import outer_sum


class Cache(NamedTuple):
    gates: np.ndarray    # (T, B, 3H) r_t, z_t, n_t
    deriv: np.ndarray    # (T, B, 3H) sigmoid'(a_r), sigmoid'(a_z), tanh'(a_n)
    inner: np.ndarray    # (T, B, H)  after: W_hn h_{t-1} + b_hn; before: r_t * h_{t-1}
    keep: np.ndarray     # (T, B, H)  1 - z_t = sigmoid(-a_z), exact as z_t -> 1


class GRU:
    G = 3
    name = "gru"

    def __init__(self, reset: str = "after"):
        self.reset = reset

    @staticmethod
    def width(H: int) -> int:
        return H

    @staticmethod
    def hidden(states):
        return states

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
        W_rz, W_n = w.W_rec[:2 * H], w.W_rec[2 * H:]
        b_rz = None if w.b_rec is None else w.b_rec[:2 * H]
        b_n = None if w.b_rec is None else w.b_rec[2 * H:]
        with np.errstate(over="ignore"):
            for t in range(T):
                h_prev, a, g = hs[t], P[t], gates[t]
                rec = h_prev @ (w.W_rec if after else W_rz).T        # W_h h_{t-1} (+ b_h)
                if w.b_rec is not None:
                    rec += w.b_rec if after else b_rz
                a[:, :2 * H] += rec[:, :2 * H]                     # a_r, a_z
                sig(a[:, :2 * H], out=g[:, :2 * H])                # r_t, z_t
                r, z = g[:, :H], g[:, H:2 * H]
                sig(-a[:, H:2 * H], out=keep[t])                   # 1 - z_t, without cancelling
                if after:
                    inner[t] = rec[:, 2 * H:]                      # W_hn h_{t-1} + b_hn
                    a[:, 2 * H:] += r * inner[t]                   # a_n = ... + r * (...)
                else:
                    np.multiply(r, h_prev, out=inner[t])           # r_t * h_{t-1}
                    a[:, 2 * H:] += inner[t] @ W_n.T               # a_n = ... + W_hn (r h)
                    if b_n is not None:
                        a[:, 2 * H:] += b_n
                n = tanh(a[:, 2 * H:], out=g[:, 2 * H:])           # n_t
                hs[t + 1] = keep[t] * n + z * h_prev               # h_t = (1 - z) n + z h_{t-1}
        if not derivative:
            return hs, None
        act_derivative("sigmoid", P[..., :2 * H], out=P[..., :2 * H])
        act_derivative("tanh", P[..., 2 * H:], out=P[..., 2 * H:])
        return hs, Cache(gates, P, inner, keep)

    def back(self, w, cache, states, lo: int, hi: int, ds):
        H = ds.shape[-1]
        h_prev = states[lo:hi]
        g, d = cache.gates[lo:hi], cache.deriv[lo:hi]
        r, z, n = g[..., :H], g[..., H:2 * H], g[..., 2 * H:]
        dn = ds * cache.keep[lo:hi]                        # h = (1 - z) n + z h_prev
        dz = ds * (h_prev - n)
        da_n = dn * d[..., 2 * H:]                         # n = tanh(a_n)
        da_z = dz * d[..., H:2 * H]                        # z = sigmoid(a_z)
        if self.reset == "after":
            dr = da_n * cache.inner[lo:hi]                 # a_n = ... + r * (W_hn h_prev + b_hn)
            da_r = dr * d[..., :H]                         # r = sigmoid(a_r)
            dP = np.concatenate([da_r, da_z, da_n], axis=-1)
            dR = np.concatenate([da_r, da_z, da_n * r], axis=-1)   # W_hn h_prev + b_hn, times r
            return dP, dR, ds * z + dR @ w.W_rec           # carry to h_prev: direct + via W_hh
        d_rh = da_n @ w.W_rec[2 * H:]                      # a_n = ... + W_hn (r * h_prev)
        da_r = d_rh * h_prev * d[..., :H]                  # r = sigmoid(a_r)
        dP = np.concatenate([da_r, da_z, da_n], axis=-1)
        ds_prev = ds * z + d_rh * r + dP[..., :2 * H] @ w.W_rec[:2 * H]
        return dP, None, ds_prev

    def recurrent_grads(self, w, cache, states, dR, lo: int):
        H = states.shape[-1]
        db = dR.sum(axis=tuple(range(dR.ndim - 1))) if w.b_rec is not None else None
        if self.reset == "after":
            return outer_sum(dR, states[lo:-1]), db        # dW_hh = sum_t dR_t h_{t-1}^T
        dW = np.concatenate([outer_sum(dR[..., :2 * H], states[lo:-1]),    # r, z: h_{t-1}
                             outer_sum(dR[..., 2 * H:], cache.inner[lo:])])  # n: r_t * h_{t-1}
        return dW, db
