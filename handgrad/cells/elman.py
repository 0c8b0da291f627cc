"""The Elman cell (the tutorial's RNN):

    a_t = U x_t + W h_{t-1} + b        h_t = act(a_t)       act: sigmoid | tanh | relu | identity

Size letters: T steps, B batch, H hidden units, n steps handled at once. State s_t = h_t (S = H),
G = 1: P_t = U x_t + b, and the recurrent term is W h_{t-1}.

The forward loop is a few numpy calls per step into preallocated arrays (at B = 1 the cost of a
step is the calls, not the arithmetic). A real sigmoid runs on the negated pre-activations
-a_t = -P_t + (-W) h_{t-1}: negation is exact in floating point, so -a_t is bit for bit the
negation of a_t, and sigmoid(a_t) = 1 / (1 + exp(-a_t)) then needs no negation per step;
sigmoid'(a) = 1 / (2 + 2 cosh(a)) is even, so the cache is the same.
"""
from __future__ import annotations

import numpy as np

from ..nonlin import act_derivative, act_function
from . import Cell, matmul_into, outer_sum


class Elman(Cell):
    G = 1
    name = "elman"

    def __init__(self, activation: str):
        self.activation = activation

    def run(self, w, P, s0, derivative: bool = True):
        """States (T + 1, B, H) and act'(a_t) (T, B, H), computed in place of P (T, B, H)."""
        T, B, H = P.shape
        hs = np.empty((T + 1, B, H), P.dtype)
        hs[0] = s0
        Wh = np.empty((B, H), P.dtype)
        dot, add = np.dot, np.add                         # (np.dot: less call overhead than matmul;
        with np.errstate(over="ignore"):                  #  positional out: less than out=)
            if self.activation == "sigmoid" and not np.iscomplexobj(hs):
                # sigmoid's exp(-a) -> inf is exact
                nWT = np.negative(w.W_rec.T, order="C")   # -W^T: the loop computes -a_t
                np.negative(P, out=P)
                exp, reciprocal = np.exp, np.reciprocal
                one = np.ones((B, H))                     # (adding an array: less overhead than 1.0)
                for t in range(T):
                    a, h = P[t], hs[t + 1]
                    dot(hs[t], nWT, Wh)
                    add(a, Wh, a)                         # -a_t = -(U x_t + b) - W h_{t-1}
                    exp(a, h)                             # h_t = 1 / (1 + exp(-a_t))
                    add(h, one, h)
                    reciprocal(h, h)
            else:
                WT = np.ascontiguousarray(w.W_rec.T)
                f = act_function(self.activation, np.iscomplexobj(hs))
                for t in range(T):
                    a = P[t]
                    dot(hs[t], WT, Wh)
                    add(a, Wh, a)                         # a_t = U x_t + b + W h_{t-1}
                    f(a, out=hs[t + 1])                   # h_t = act(a_t)
        if not derivative:
            return hs, None
        # act'(a_t), in place of a_t (of -a_t for the sigmoid: its derivative is even)
        return hs, act_derivative(self.activation, P, out=P)

    @staticmethod
    def dP_slot(dact, lo: int, hi: int):
        return dact[lo:hi]

    def back_into(self, w, dact, states, lo: int, hi: int, ds, dP, ds_prev=None, dR=None):
        np.multiply(ds, dact[lo:hi], out=dP)              # h_t = act(a_t): da = dh * act'(a_t)
        if ds_prev is not None:
            matmul_into(dP, w.W_rec, ds_prev)             # a_t = ... + W h_{t-1}: carry to h_{t-1}
        return dP, None, ds_prev

    def step_back(self, w, dact, states, t: int, ds, dP, ds_prev=None, dR=None):
        np.multiply(ds, dact[t - 1], dP)                  # h_t = act(a_t): da = dh * act'(a_t)
        if ds_prev is not None:
            np.dot(dP, w.W_rec, ds_prev)                  # a_t = ... + W h_{t-1}: carry to h_{t-1}

    def recurrent_grads(self, w, dact, states, dR, lo: int):
        return outer_sum(dR, states[lo:-1]), None         # dW = sum_t da_t h_{t-1}^T
