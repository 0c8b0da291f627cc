"""Recurrent cells: the one place where the Elman, GRU and LSTM equations live.

Size letters: T time steps, B batch, D inputs, H hidden units, G gate blocks (1 Elman, 3 GRU,
4 LSTM), S state width (H; 2H for the LSTM, whose state is [h, c]), n steps handled at once.

Every cell has the same seam, so truncation, the loss, numerical differentiation, the oracle and
the research tools are written once, in `handgrad.bptt` and beyond:

    a_t = P_t + (the cell's recurrent terms in s_{t-1})      P_t = W_in x_t + b_in  (all t at once)
    s_t = the cell's update of s_{t-1}                        h_t = hidden(s_t)

- `run(w, P, s0, derivative)`: the forward recurrence over all T steps, from the input
  projections P (T, B, G H) (overwritten) and the initial state s0 (B, S). Returns the states
  (T + 1, B, S) (s_0 .. s_T) and a cache for `back` (None when `derivative` is False: prediction
  and numerical differentiation, which also pass complex arrays).
- `back_into(w, cache, states, lo, hi, ds, dP, ds_prev=None, dR=None)`: the backward step of steps
  lo + 1 .. hi at once (any n = hi - lo steps side by side: one step in a sweep, or a block of
  the sweeps of a `Window(k)` at one lag). ds (n, B, S) is dL/ds_t. Writes dL/dP_t (the gradient
  of the gates' pre-activations through their input side) into dP (n, B, G H), which may be the
  cache's own `dP_slot` (a backward that visits each step once consumes the cache); dL/ds_{t-1}
  along this step into ds_prev (n, B, S), which may be ds itself, or skips that product when
  ds_prev is None (a cut, or h_0 not asked for); and, for a cell with `own_dR`, the gradient of
  the recurrent product's output into dR (n, B, G H) (it differs from dP only in the GRU's
  reset-after candidate block). Every output is written, never accumulated.
- `back(w, cache, states, lo, hi, ds)`: `back_into` new arrays, returned as (dP, dR or None,
  ds_prev) (for code that does not keep buffers: handgrad.research).
- `step_back(w, cache, states, t, ds, dP, ds_prev=None, dR=None)`: `back_into` of the one step t on
  (B, S) and (B, G H) arrays (a sweep's inner loop: at B = 1 the cost of a step is its calls).
- `recurrent_grads(w, cache, states, dR, lo)`: dW_rec and db_rec summed over steps lo + 1 .. T,
  each a single matrix product over time (dR (T - lo, B, G H), summed over the sweeps; dP when
  the cell has no `own_dR`).
- `dP_slot(cache, lo, hi)`: the part of the cache that the backward step of steps lo + 1 .. hi
  may overwrite with dP (n, B, G H), once it has read it.

The input side is the same for every cell and is done by `bptt`: dW_in = sum_t dP_t x_t^T,
db_in = sum_t dP_t, dx_t = W_in^T dP_t.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ..params import GatedParams, Params


class Weights(NamedTuple):
    """A cell's view of its parameters (the output layer is not the cell's business)."""

    W_in: np.ndarray             # (G H, D)   Elman: U
    W_rec: np.ndarray            # (G H, H)   Elman: W
    b_in: Optional[np.ndarray]   # (G H,)     Elman: b
    b_rec: Optional[np.ndarray]  # (G H,)     Elman: none (b enters once)


class Cell:
    """What every cell shares: a state as wide as h (the LSTM overrides `width` and `hidden`),
    the block of its cache that dL/dP_t may overwrite (`dP_slot`: the gates' derivatives;
    Elman's cache is that block itself), and `back`, the form of `back_into` that returns new
    arrays. A cell defines `G`, `name`, `own_dR`, `run`, `back_into`, `step_back` and
    `recurrent_grads`."""

    own_dR = False

    @staticmethod
    def width(H: int) -> int:
        return H

    @staticmethod
    def hidden(states):
        return states

    @staticmethod
    def dP_slot(cache, lo: int, hi: int):
        return cache.deriv[lo:hi]

    def _scratch(self, key: str, shape):
        """A work array of `shape`, reused by the calls of one gradient (one cell object)."""
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = buffers[key] = np.empty(shape)
        return buf

    def back(self, w, cache, states, lo: int, hi: int, ds):
        """`back_into` into new arrays: (dP, dR or None, ds_prev) of steps lo + 1 .. hi."""
        shape = ds.shape[:-1] + (w.W_in.shape[0],)
        dR = np.empty(shape) if self.own_dR else None
        return self.back_into(w, cache, states, lo, hi, ds, np.empty(shape), np.empty(ds.shape), dR)


def weights_of(params) -> Weights:
    """The cell weights of a `Params` or `GatedParams`."""
    if isinstance(params, GatedParams):
        return Weights(params.W_ih, params.W_hh, params.b_ih, params.b_hh)
    return Weights(params.U, params.W, params.b, None)


def cell_grads(params, dW_in, dW_rec, db_in, db_rec, dV, dc):
    """Gradients in the type and names of `params`."""
    if isinstance(params, GatedParams):
        return GatedParams(dW_in, dW_rec, db_in, db_rec, dV, dc)
    return Params(dW_in, dW_rec, dV, db_in, dc)


def cell_for(spec):
    """The cell object of `spec` (`spec.cell`, with its activation or reset convention)."""
    from .elman import Elman
    from .gru import GRU
    from .lstm import LSTM
    if spec.cell == "gru":
        return GRU(spec.gru_reset)
    if spec.cell == "lstm":
        return LSTM()
    return Elman(spec.activation)


def outer_sum(dX, X) -> np.ndarray:
    """sum over the leading axes of dX[..., :, None] * X[..., None, :]: (..., M), (..., N) -> (M, N),
    one matrix product (the time sums of every weight gradient)."""
    M, N = dX.shape[-1], X.shape[-1]
    a, b = dX.reshape(-1, M), X.reshape(-1, N)
    if a.shape[0] == 1:                  # one row (one step of one sample): the outer product,
        return a[0, :, None] * b[0, None, :]   # the same numbers without a BLAS call's overhead
    return a.T @ b


def matmul_into(a, b, out):
    """out = a @ b for a (..., K), b (K, N), out (..., N): one BLAS product over every leading
    axis (np.dot on 2-D views; a non-contiguous `out` gets the product copied in)."""
    a2 = a if a.ndim == 2 else a.reshape(-1, a.shape[-1])
    if out.flags.c_contiguous:
        np.dot(a2, b, out=out.reshape(-1, out.shape[-1]))
    else:
        out[...] = (a2 @ b).reshape(out.shape)
    return out
