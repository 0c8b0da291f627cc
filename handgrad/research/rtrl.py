"""Real-time recurrent learning (Williams & Zipser 1989): the full BPTT gradient computed forward
in time, by carrying the influence matrix dh_t/dTheta.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, Z = H + D (+ 1 with a
bias), P = H Z recurrent parameter elements. Theta = [W | U | b] (see `_online`).

With M_t[k, i, j] = dh_t[k] / dTheta[i, j] (one (H, H, Z) array per sample):

    M_0 = 0
    M_t[k, i, j] = act'(a_t[k]) ( sum_l W[k, l] M_{t-1}[l, i, j]  +  delta_ki z_t[j] )
    dL/dTheta    = sum_t sum_k dL_t/dh_t[k] M_t[k, i, j]

and for the initial state, N_t = dh_t/dh_0 (H, H): N_0 = I, N_t = diag(act'(a_t)) W N_{t-1},
dL/dh_0 = sum_t dL_t/dh_t N_t. Memory O(B H P) whatever T; time O(T B H^2 P) = O(T B H^4),
against O(T B H^2) for BPTT: exact, but a factor of about P slower per step.

`rtrl_grads` is the same gradient as `hg.loss_and_grads` with full BPTT (a second exact method,
of another kind: forward mode). A truncated spec is refused: truncation is defined by cutting
the backward pass, which RTRL does not have.

`mask` (H, H) over (k, i) keeps M_t[k, i, :] only where mask[k, i] (applied after every update):
the dense, masked RTRL that defines SnAp-n (see `snap`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ._online import Method, as_params, grouped_pass, problem

CARRY_BYTES = 64 * 2**20      # influence of one group of samples at most this large (x2 buffers)


class Influence(NamedTuple):
    M: np.ndarray             # (H, B, H Z)  M[k, b, i Z + j] = dh_t[b, k] / dTheta[i, j]
    spare: np.ndarray         # (H, B, H Z)  the next step's buffer
    N: Optional[np.ndarray]   # (H, B, H)    N[k, b, m] = dh_t[b, k] / dh_0[b, m], or None


def rtrl_method(mask: Optional[np.ndarray] = None, with_h0: bool = False) -> Method:
    """RTRL as a `Method` (for `_online.forward_pass` and online training). mask: (H, H) bool
    over (k, i), or None for the exact influence."""

    def init(B, H, Z):
        N = None
        if with_h0:
            N = np.zeros((H, B, H))
            N[np.arange(H), :, np.arange(H)] = 1.0                 # dh_0/dh_0 = I
        return Influence(np.zeros((H, B, H * Z)), np.empty((H, B, H * Z)), N)

    def advance(inf, W, z, d):
        H, B, HZ = inf.M.shape
        Z = HZ // H
        new = inf.spare
        # a_t = W h_{t-1} + ...: the influence on h_{t-1} reaches a_t through W
        np.matmul(W, inf.M.reshape(H, B * HZ), out=new.reshape(H, B * HZ))
        # a_t[i] = Theta[i, :] z_t: the immediate part, delta_ki z_t[j]
        new4 = new.reshape(H, B, H, Z)
        ar = np.arange(H)
        new4[ar, :, ar, :] += z
        # h_t = act(a_t): every row k scaled by act'(a_t[k])
        new4 *= d.T[:, :, None, None]
        if mask is not None:
            new4 *= mask[:, None, :, None]
        N = inf.N
        if N is not None:                                          # h_0 enters through W only
            N = d.T[:, :, None] * (W @ N.reshape(H, -1)).reshape(N.shape)
        return Influence(new, inf.M, N)

    def readout(inf, dh):
        H, B, HZ = inf.M.shape
        # sum_k dL_t/dh_t[b, k] M_t[k, b, :] for every sample b
        out = np.matmul(dh[:, None, :], inf.M.transpose(1, 0, 2))  # (B, 1, H Z)
        return out.reshape(B, H, HZ // H)

    def readout_h0(inf, dh):
        return np.einsum("bk,kbm->bm", dh, inf.N)                 # sum_k dL_t/dh_t[k] N_t[k]

    return Method("rtrl" if mask is None else "masked rtrl", init, advance, readout,
                  readout_h0 if with_h0 else None)


def group_size(H: int, Z: int) -> int:
    """Samples whose influence matrices fit in CARRY_BYTES together."""
    return max(1, CARRY_BYTES // (8 * H * H * Z))


def rtrl_pass(params, xs, ys, spec, h0=None, mask=None, with_h0=False, what="rtrl_grads"):
    """Validate and run RTRL (or masked RTRL); the `_online.PassResult` and the `Problem`."""
    prob = problem(params, xs, ys, spec, h0, what)
    D, H, _ = prob.params.sizes
    Z = H + D + (1 if prob.params.b is not None else 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (H, H):
            raise ValueError(f"mask must have shape (H, H) = ({H}, {H}), got {mask.shape}")
    res = grouped_pass(prob, rtrl_method(mask, with_h0), group_size(H, Z), work_per_unit=Z)
    return res, prob


def rtrl_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False):
    """The full-BPTT loss and gradient by real-time recurrent learning (forward mode).

    params: `Params`; xs: (B, T, D); ys: (B, O) | (B, T, O) floats or (B,) | (B, T) class ids;
    spec: an Elman `Spec` with truncation None; h0: (B, H) or None (zeros).
    Returns (loss, grads) or, with `wrt_h0=True`, (loss, grads, dh0 (B, H)), as `hg.loss_and_grads`.
    Memory O(B H^2 Z) (samples processed in groups when that is large), independent of T.
    """
    if not isinstance(wrt_h0, (bool, np.bool_)):
        raise ValueError(f"wrt_h0 must be True or False, got {wrt_h0!r}")
    res, prob = rtrl_pass(params, xs, ys, spec, h0, with_h0=bool(wrt_h0))
    grads = as_params(res, prob)
    return (res.loss, grads, res.dh0) if wrt_h0 else (res.loss, grads)


def masked_rtrl_grads(params, xs, ys, spec, mask, h0=None):
    """RTRL whose influence M_t[k, i, :] is zeroed wherever mask[k, i] is False, after every step.
    mask: (H, H) bool. Returns (loss, grads). The dense definition of SnAp (see `snap_grads`)."""
    res, prob = rtrl_pass(params, xs, ys, spec, h0, mask=mask, what="masked_rtrl_grads")
    return res.loss, as_params(res, prob)
