"""The LSTM, in PyTorch's layout and gate order (blocks i, f, g, o of W_ih, W_hh, b_ih, b_hh):

    i_t, f_t, g_t, o_t = sigmoid, sigmoid, tanh, sigmoid of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Size letters: T steps, B batch, H hidden units, n steps handled at once. The state is the pair,
stored side by side: s_t = [h_t, c_t] (S = 2H); a truncation holds both constant. G = 4.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nonlin import act_derivative, act_function
from . import Cell, matmul_into, outer_sum


class Cache(NamedTuple):
    gates: np.ndarray    # (T, B, 4H) i_t, f_t, g_t, o_t
    deriv: np.ndarray    # (T, B, 4H) sigmoid'(a_i), sigmoid'(a_f), tanh'(a_g), sigmoid'(a_o)
    tanh_c: np.ndarray   # (T, B, H)  tanh(c_t)
    dtanh_c: np.ndarray  # (T, B, H)  tanh'(c_t)


class LSTM(Cell):
    G = 4
    name = "lstm"

    @staticmethod
    def width(H: int) -> int:
        return 2 * H

    @staticmethod
    def hidden(states):
        return states[..., :states.shape[-1] // 2]

    def run(self, w, P, s0, derivative: bool = True):
        """States (T + 1, B, 2H) = [h_t, c_t] and a `Cache`; P (T, B, 4H) becomes the
        pre-activations."""
        T, B, H4 = P.shape
        H = H4 // 4
        complex_ = np.iscomplexobj(P)
        sig, tanh = act_function("sigmoid", complex_), act_function("tanh", complex_)
        states = np.empty((T + 1, B, 2 * H), P.dtype)
        states[0] = s0
        gates = np.empty((T, B, 4 * H), P.dtype)
        tanh_c = np.empty((T, B, H), P.dtype)
        WT = np.ascontiguousarray(w.W_rec.T)
        rec = np.empty((B, 4 * H), P.dtype)
        ig = np.empty((B, H), P.dtype)
        dot, add, multiply = np.dot, np.add, np.multiply
        with np.errstate(over="ignore"):
            for t in range(T):
                h_prev, c_prev = states[t, :, :H], states[t, :, H:]
                a, g = P[t], gates[t]
                dot(h_prev, WT, out=rec)
                add(a, rec, out=a)                                 # W_ih x + b_ih + W_hh h
                if w.b_rec is not None:
                    add(a, w.b_rec, out=a)                         # ... + b_hh
                sig(a[:, :2 * H], out=g[:, :2 * H])                # i_t, f_t
                tanh(a[:, 2 * H:3 * H], out=g[:, 2 * H:3 * H])     # g_t
                sig(a[:, 3 * H:], out=g[:, 3 * H:])                # o_t
                c = states[t + 1, :, H:]
                multiply(g[:, H:2 * H], c_prev, out=c)             # c_t = f c_{t-1} ...
                multiply(g[:, :H], g[:, 2 * H:3 * H], out=ig)
                add(c, ig, out=c)                                  # ... + i g
                tanh(c, out=tanh_c[t])
                multiply(g[:, 3 * H:], tanh_c[t], out=states[t + 1, :, :H])   # h_t = o tanh(c_t)
        if not derivative:
            return states, None
        act_derivative("sigmoid", P[..., :2 * H], out=P[..., :2 * H])
        act_derivative("tanh", P[..., 2 * H:3 * H], out=P[..., 2 * H:3 * H])
        act_derivative("sigmoid", P[..., 3 * H:], out=P[..., 3 * H:])
        dtanh_c = act_derivative("tanh", states[1:, :, H:])
        return states, Cache(gates, P, tanh_c, dtanh_c)

    def back_into(self, w, cache, states, lo: int, hi: int, ds, dP, ds_prev=None, dR=None):
        H = ds.shape[-1] // 2
        dh, dc = ds[..., :H], ds[..., H:]
        g, d = cache.gates[lo:hi], cache.deriv[lo:hi]        # d may be dP itself: each block
        i, f, gg, o = g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H], g[..., 3 * H:]
        c_prev = states[lo:hi, ..., H:]
        shape = ds.shape[:-1] + (H,)
        do, dc_t, tmp = (self._scratch(k, shape) for k in ("do", "dc", "tmp"))
        np.multiply(dh, cache.tanh_c[lo:hi], out=do)       # h = o tanh(c)
        np.multiply(dh, o, out=dc_t)                       # ... and through tanh(c)
        dc_t *= cache.dtanh_c[lo:hi]
        np.add(dc, dc_t, out=dc_t)
        # c = f c_prev + i g, and each gate's own derivative (block by block: d may be dP)
        np.multiply(dc_t, gg, out=tmp)
        np.multiply(tmp, d[..., :H], out=dP[..., :H])      # i = sigmoid(a_i)
        np.multiply(dc_t, c_prev, out=tmp)
        np.multiply(tmp, d[..., H:2 * H], out=dP[..., H:2 * H])  # f = sigmoid(a_f)
        np.multiply(dc_t, i, out=tmp)
        np.multiply(tmp, d[..., 2 * H:3 * H], out=dP[..., 2 * H:3 * H])  # g = tanh(a_g)
        np.multiply(do, d[..., 3 * H:], out=dP[..., 3 * H:])  # o = sigmoid(a_o)
        if ds_prev is not None:
            matmul_into(dP, w.W_rec, tmp)                  # a = ... + W_hh h_prev: carry to h_prev
            ds_prev[..., :H] = tmp
            np.multiply(dc_t, f, out=ds_prev[..., H:])     # c = f c_prev + ...: carry to c_prev
        return dP, None, ds_prev

    def step_back(self, w, cache, states, t: int, ds, dP, ds_prev=None, dR=None):
        """`back` of the one step t, on (B, S) and (B, G H) arrays."""
        self.back_into(w, cache, states, t - 1, t, ds[None], dP[None],
                  None if ds_prev is None else ds_prev[None], None if dR is None else dR[None])

    def recurrent_grads(self, w, cache, states, dR, lo: int):
        H = states.shape[-1] // 2
        db = dR.sum(axis=tuple(range(dR.ndim - 1))) if w.b_rec is not None else None
        return outer_sum(dR, states[lo:-1, :, :H]), db    # dW_hh = sum_t dA_t h_{t-1}^T
