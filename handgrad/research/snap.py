"""SnAp-n (Menick et al. 2021, "Practical real time recurrent learning with a sparse
approximation"): RTRL whose influence matrix keeps only the entries that can be nonzero n steps
after a parameter is first used.

Size letters: B batch, T time steps, D inputs, H hidden units, Z = H + D (+ 1 with a bias).
Theta = [W | U | b] and the influence M_t[k, i, j] = dh_t[k] / dTheta[i, j] as in `rtrl`.

Theta[i, j] acts on h_t[i] in one step; one step later on every h[k] with W[k, i] != 0; and so on.
So the entries reachable in n steps are those (k, i) with a path of at most n - 1 edges from unit
i to unit k in the graph of W (edge l -> k when W[k, l] != 0):

    S_n = pattern of (I + |W| != 0)^(n - 1)             (H, H) over (k, i)
    M_t = S_n * ( diag(act'(a_t)) (W M_{t-1} + I_t) )     (RTRL's update, then the mask)

SnAp-1 keeps the diagonal only (M_t[i, i, :], O(B P / H) memory and O(B P) time per step, as
cheap as the forward pass); for a dense W, S_2 is full and SnAp-2 *is* RTRL. The sparsity
pattern is W's nonzero entries (a sparse network is the setting the paper is written for).

`snap_grads` computes it compactly (SnAp-1 on the diagonal; n >= 2 on the rows each column i
reaches); `rtrl.masked_rtrl_grads(..., mask=snap_pattern(W, n))` is the dense definition, and the
tests prove the two equal. SnAp is biased (it drops influence), except where S_n is full.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._online import Method, as_params, grouped_pass, problem
from .rtrl import CARRY_BYTES, rtrl_method


def snap_pattern(W, n: int) -> np.ndarray:
    """S_n (H, H) bool over (k, i): Theta[i, :] can influence h[k] within n steps. W: (H, H)."""
    n = _check_n(n)
    W = np.asarray(W)
    H = W.shape[0]
    step = (W != 0) | np.eye(H, dtype=bool)
    S = np.eye(H, dtype=bool)
    for _ in range(n - 1):
        S = (step.astype(np.int64) @ S.astype(np.int64)) > 0        # one more edge
    return S


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (SnAp-1, SnAp-2, ...), got {n!r}")
    return int(n)


class Diagonal(NamedTuple):
    """SnAp-1: M[b, i, j] = dh_t[b, i] / dTheta[i, j]."""

    M: np.ndarray             # (B, H, Z)


def snap1_method() -> Method:
    def init(B, H, Z):
        return Diagonal(np.zeros((B, H, Z)))

    def advance(carry, W, z, d):
        # a_t[i] = W[i, i] h_{t-1}[i] + (terms SnAp-1 drops) + Theta[i, :] z_t
        M = np.diagonal(W)[None, :, None] * carry.M + z[:, None, :]
        return Diagonal(M * d[:, :, None])                         # h_t = act(a_t)

    def readout(carry, dh):
        return dh[:, :, None] * carry.M                            # dL_t/dh_t[i] M_t[i, i, :]

    return Method("snap-1", init, advance, readout)


class Columns(NamedTuple):
    """SnAp-n, n >= 2: for each column i, the rows K_i it reaches; blocks[i][r, b, j] =
    dh_t[b, K_i[r]] / dTheta[i, j]."""

    blocks: tuple             # H arrays (|K_i|, B, Z)


def snapn_method(pattern: np.ndarray) -> Method:
    """SnAp with the (H, H) pattern over (k, i) (`snap_pattern`), column by column."""
    H = pattern.shape[0]
    rows = [np.flatnonzero(pattern[:, i]) for i in range(H)]       # K_i, always containing i
    own = [int(np.flatnonzero(r == i)[0]) for i, r in enumerate(rows)]

    def init(B, H_, Z):
        return Columns(tuple(np.zeros((len(r), B, Z)) for r in rows))

    def advance(carry, W, z, d):
        out = []
        for i, (K, Mi) in enumerate(zip(rows, carry.blocks)):
            m, B, Z = Mi.shape
            # a_t[k] = sum_l W[k, l] h_{t-1}[l] + ...: only l in K_i carry influence of column i
            new = (W[np.ix_(K, K)] @ Mi.reshape(m, B * Z)).reshape(m, B, Z)
            new[own[i]] += z                                       # immediate: delta_ki z_t
            new *= d[:, K].T[:, :, None]                           # h_t = act(a_t)
            out.append(new)
        return Columns(tuple(out))

    def readout(carry, dh):
        B = dh.shape[0]
        Z = carry.blocks[0].shape[2]
        g = np.empty((B, H, Z))
        for i, (K, Mi) in enumerate(zip(rows, carry.blocks)):
            # sum over k in K_i of dL_t/dh_t[b, k] M_t[k, i, :]
            g[:, i] = np.einsum("kb,kbj->bj", dh[:, K].T, Mi)
        return g

    return Method("snap", init, advance, readout)


def snap_grads(params, xs, ys, spec, n: int = 1, h0=None):
    """The SnAp-n estimate of the full gradient. Returns (loss, grads).

    params: `Params`; xs: (B, T, D); ys as for `hg.loss_and_grads`; spec: an Elman `Spec` with
    truncation None; n: 1, 2, ... (the steps of influence kept); h0: (B, H) or None.
    Deterministic; V and c are exact, (U, W, b) keep the influence reachable in n steps
    (the pattern comes from W's nonzero entries, see `snap_pattern`).
    """
    n = _check_n(n)
    prob = problem(params, xs, ys, spec, h0, "snap_grads")
    W = prob.params.W
    D, H, _ = prob.params.sizes
    Z = H + D + (1 if prob.params.b is not None else 0)
    pattern = snap_pattern(W, n)
    if n == 1:
        method = snap1_method()
    elif pattern.all():
        method = rtrl_method()            # nothing is dropped: SnAp-n is RTRL, and costs as much
    else:
        method = snapn_method(pattern)
    group = max(1, CARRY_BYTES // (8 * int(pattern.sum()) * Z))   # as rtrl: a bounded carry
    res = grouped_pass(prob, method, group, work_per_unit=Z if n > 1 else 0)
    return res.loss, as_params(res, prob)
