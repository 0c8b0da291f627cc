"""The Elman cell (the tutorial's RNN):

    a_t = U x_t + W h_{t-1} + b        h_t = act(a_t)       act: sigmoid | tanh | relu | identity

Size letters: T steps, B batch, H hidden units, n steps handled at once. State s_t = h_t (S = H),
G = 1: P_t = U x_t + b, and the recurrent term is W h_{t-1}.
"""
from __future__ import annotations

import numpy as np

from ..nonlin import act_derivative, act_function
from . import outer_sum


class Elman:
    G = 1
    name = "elman"

    def __init__(self, activation: str):
        self.activation = activation

    @staticmethod
    def width(H: int) -> int:
        return H

    @staticmethod
    def hidden(states):
        return states

    def run(self, w, P, s0, derivative: bool = True):
        """States (T + 1, B, H) and act'(a_t) (T, B, H), computed in place of P (T, B, H)."""
        T, B, H = P.shape
        hs = np.empty((T + 1, B, H), P.dtype)
        hs[0] = s0
        WT = np.ascontiguousarray(w.W_rec.T)
        f = act_function(self.activation, np.iscomplexobj(hs))
        Wh = np.empty((B, H), P.dtype)
        with np.errstate(over="ignore"):                  # sigmoid's exp(-a) -> inf is exact
            for t in range(1, T + 1):
                np.dot(hs[t - 1], WT, out=Wh)             # (np.dot: less call overhead than matmul)
                P[t - 1] += Wh                            # a_t = U x_t + b + W h_{t-1}
                f(P[t - 1], out=hs[t])                    # h_t = act(a_t)
        if not derivative:
            return hs, None
        return hs, act_derivative(self.activation, P, out=P)   # act'(a_t), in place of a_t

    def back(self, w, dact, states, lo: int, hi: int, ds):
        da = ds * dact[lo:hi]                             # h_t = act(a_t): da = dh * act'(a_t)
        return da, None, da @ w.W_rec                     # a_t = ... + W h_{t-1}: carry to h_{t-1}

    def recurrent_grads(self, w, dact, states, dR, lo: int):
        return outer_sum(dR, states[lo:-1]), None         # dW = sum_t da_t h_{t-1}^T
