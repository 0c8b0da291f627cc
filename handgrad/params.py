"""The parameters of the RNN family, shared by `handgrad` (numpy) and `reference` (JAX).

Size letters: D input features, H hidden units, O outputs, G gate blocks (3 for the GRU, 4 for
the LSTM).

Two NamedTuples (JAX treats both as pytrees); gradients come back as the same type and shapes:

- `Params(U, W, V, b, c)` for the Elman cell, in the contract's names;
- `GatedParams(W_ih, W_hh, b_ih, b_hh, V, c)` for the GRU and the LSTM, in PyTorch's layout and
  gate order (GRU blocks r, z, n; LSTM blocks i, f, g, o), so that `weight_ih_l0` and friends
  copy straight in.

`V` and `c` are None without an output head (`Spec.head=False`); biases are None when
`Spec.bias=False`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

INITS = ("normal", "orthogonal", "tutorial")
GATES = {"gru": 3, "lstm": 4}                 # gate blocks G of W_ih (G H, D), W_hh (G H, H)
GATE_NAMES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


class Params(NamedTuple):
    """Weights of a_t = U x_t + W h_{t-1} + b,  h_t = act(a_t),  o_t = V h_t + c.

    Gradients come back as `Params` of the same shapes. A NamedTuple, so JAX treats it as a pytree.
    """

    U: np.ndarray                   # (H, D) input -> hidden
    W: np.ndarray                   # (H, H) hidden -> hidden
    V: Optional[np.ndarray] = None  # (O, H) hidden -> output, None when Spec.head is False
    b: Optional[np.ndarray] = None  # (H,) hidden bias, None when Spec.bias is False
    c: Optional[np.ndarray] = None  # (O,) output bias, None without bias or without head

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(D, H, O); O = H without an output head."""
        return self.U.shape[1], self.W.shape[0], (self.W.shape[0] if self.V is None
                                                  else self.V.shape[0])

    def arrays(self) -> dict:
        """The arrays that are present, by name (no `None` entries)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


class GatedParams(NamedTuple):
    """Weights of a GRU or an LSTM in PyTorch's layout, and the output layer o_t = V h_t + c.

    Gate blocks are stacked along the first axis: rows [g H, (g + 1) H) of W_ih, W_hh, b_ih and
    b_hh belong to gate g (GRU: r, z, n; LSTM: i, f, g, o).
    """

    W_ih: np.ndarray                   # (G H, D) input -> gates
    W_hh: np.ndarray                   # (G H, H) hidden -> gates
    b_ih: Optional[np.ndarray] = None  # (G H,) None when Spec.bias is False
    b_hh: Optional[np.ndarray] = None  # (G H,) None when Spec.bias is False
    V: Optional[np.ndarray] = None     # (O, H) None when Spec.head is False
    c: Optional[np.ndarray] = None     # (O,) None without bias or without head

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(D, H, O); O = H without an output head."""
        H = self.W_hh.shape[1]
        return self.W_ih.shape[1], H, (H if self.V is None else self.V.shape[0])

    def arrays(self) -> dict:
        """The arrays that are present, by name (no `None` entries)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


def params_type(spec):
    """`Params` for the Elman cell, `GatedParams` for the GRU and the LSTM."""
    return GatedParams if spec.cell in GATES else Params


def param_names(spec) -> tuple:
    """The names of the arrays `spec` has, in order (no output layer without a head, no biases
    without bias)."""
    if spec.cell in GATES:
        names = ("W_ih", "W_hh") + (("b_ih", "b_hh") if spec.bias else ())
    else:
        names = ("U", "W") + (("b",) if spec.bias else ())
    if spec.head:
        names += ("V", "c") if spec.bias else ("V",)
    return tuple(n for n in params_type(spec)._fields if n in names)


def _check_dim(name, value, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def init_params(spec, input_dim: int, hidden_dim: int, output_dim: Optional[int] = None,
                seed: int = 0, init: str = "normal", scale: float = 1.0):
    """Random parameters for `spec`, float64, reproducible from `seed`: a `Params` for the Elman
    cell, a `GatedParams` for the GRU and the LSTM.

    output_dim: O, required with an output head; without one (`spec.head=False`) O = H, and
    output_dim must be None or equal hidden_dim.

    init:
      "normal"     weights ~ N(0, scale^2 / fan_in) (LeCun); biases zero. Learns well.
      "orthogonal" each recurrent block a random orthogonal matrix times `scale`; the rest as
                   "normal".
      "tutorial"   every weight (and bias) ~ uniform(0, 1), as the 2019 tutorial did: sigmoid
                   units saturate.
    """
    from ._validate import check_spec   # here: _validate imports this module
    spec = check_spec(spec)
    D = _check_dim("input_dim", input_dim)
    H = _check_dim("hidden_dim", hidden_dim)
    O = _check_dim("output_dim", output_dim, optional=True)
    if spec.head and O is None:
        raise ValueError("output_dim must be a positive integer (the spec has an output head), "
                         "got None")
    if not spec.head and O not in (None, H):
        raise ValueError(f"output_dim must be None or hidden_dim = {H} without an output head "
                         f"(spec.head=False: o_t = h_t), got {O}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if (isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating))
            or not np.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    rng = np.random.default_rng(seed)
    G = GATES.get(spec.cell, 1)

    def weights(rows, fan_in, recurrent):
        if init == "tutorial":
            return rng.uniform(0, 1, (rows, fan_in))
        if init == "orthogonal" and recurrent:       # one orthogonal (H, H) block per gate
            blocks = []
            for _ in range(rows // fan_in):
                q, r = np.linalg.qr(rng.normal(size=(fan_in, fan_in)))
                blocks.append(scale * q * np.sign(np.diag(r)))
            return np.concatenate(blocks)
        return rng.normal(0, scale / np.sqrt(fan_in), (rows, fan_in))

    def bias(n):
        if not spec.bias:
            return None
        return rng.uniform(0, 1, n) if init == "tutorial" else np.zeros(n)

    W_in, W_rec = weights(G * H, D, False), weights(G * H, H, True)
    V = weights(O, H, False) if spec.head else None
    if spec.cell in GATES:
        b_ih, b_hh = bias(G * H), bias(G * H)
        return GatedParams(W_in, W_rec, b_ih, b_hh, V, bias(O) if spec.head else None)
    b = bias(H)                                  # (drawn before c: seeds keep their values)
    return Params(W_in, W_rec, V, b, bias(O) if spec.head else None)


def tree_map(fn, tree):
    """`fn` applied to every array of `tree`: a Params, a GatedParams, a tuple (the LSTM's h0
    pair) or list of such, an array, or None (kept as None, as are None fields)."""
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        mapped = [tree_map(fn, v) for v in tree]
        return type(tree)(*mapped) if hasattr(tree, "_fields") else type(tree)(mapped)
    return fn(tree)


def tree_leaves(tree) -> list:
    """The arrays of `tree` (see `tree_map`) in order, None skipped."""
    out = []
    tree_map(out.append, tree)
    return out
