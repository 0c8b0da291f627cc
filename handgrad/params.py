"""The parameters of the Elman RNN family, shared by `handgrad` (numpy) and `reference` (JAX).

Size letters: D input features, H hidden units, O outputs.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

INITS = ("normal", "orthogonal", "tutorial")


class Params(NamedTuple):
    """Weights of a_t = U x_t + W h_{t-1} + b,  h_t = act(a_t),  o_t = V h_t + c.

    Gradients come back as `Params` of the same shapes. A NamedTuple, so JAX treats it as a pytree.
    """

    U: np.ndarray                   # (H, D) input -> hidden
    W: np.ndarray                   # (H, H) hidden -> hidden
    V: np.ndarray                   # (O, H) hidden -> output
    b: Optional[np.ndarray] = None  # (H,) hidden bias, None when Spec.bias is False
    c: Optional[np.ndarray] = None  # (O,) output bias, None when Spec.bias is False

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(D, H, O)."""
        return self.U.shape[1], self.W.shape[0], self.V.shape[0]

    def arrays(self) -> dict:
        """The arrays that are present, by name (no `None` entries)."""
        return {k: v for k, v in self._asdict().items() if v is not None}


def init_params(spec, input_dim: int, hidden_dim: int, output_dim: int, seed: int = 0,
                init: str = "normal", scale: float = 1.0) -> Params:
    """Random parameters for `spec`, float64, reproducible from `seed`.

    init:
      "normal"     U, W, V ~ N(0, scale^2 / fan_in) (LeCun); biases zero. Learns well.
      "orthogonal" W a random orthogonal matrix times `scale`; U, V as "normal".
      "tutorial"   every weight ~ uniform(0, 1), as the 2019 tutorial did: sigmoid units saturate.
    """
    from ._validate import check_spec   # here: _validate imports this module
    spec = check_spec(spec)
    for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim),
                        ("output_dim", output_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if (isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating))
            or not np.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    D, H, O = int(input_dim), int(hidden_dim), int(output_dim)
    rng = np.random.default_rng(seed)
    if init == "tutorial":
        U, W, V = rng.uniform(0, 1, (H, D)), rng.uniform(0, 1, (H, H)), rng.uniform(0, 1, (O, H))
        b = rng.uniform(0, 1, H) if spec.bias else None
        c = rng.uniform(0, 1, O) if spec.bias else None
        return Params(U, W, V, b, c)
    U = rng.normal(0, scale / np.sqrt(D), (H, D))
    if init == "orthogonal":
        q, r = np.linalg.qr(rng.normal(size=(H, H)))
        W = scale * q * np.sign(np.diag(r))
    else:
        W = rng.normal(0, scale / np.sqrt(H), (H, H))
    V = rng.normal(0, scale / np.sqrt(H), (O, H))
    b = np.zeros(H) if spec.bias else None
    c = np.zeros(O) if spec.bias else None
    return Params(U, W, V, b, c)
