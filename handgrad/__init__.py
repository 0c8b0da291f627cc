"""handgrad: recurrent networks (Elman, GRU, LSTM) with a hand-derived, proven backpropagation
through time, and a gradient oracle for anyone's.

    import handgrad as hg
    spec = hg.Spec(activation="tanh", bias=True, output="all", loss="half_squared",
                   reduction="sum", truncation=hg.Window(5))      # cell="gru" | "lstm" too
    params = hg.init_params(spec, input_dim=D, hidden_dim=H, output_dim=O, seed=0)
    loss, grads = hg.loss_and_grads(params, xs, ys, spec, h0=None)   # hg.Params / hg.GatedParams

`import handgrad` needs numpy only; the JAX reference lives in the separate `reference` package.
"""
from . import _cli_start  # noqa: F401  (first: Ctrl-C while the CLI starts is one line, exit 130)
from .bptt import loss_and_grads, predict
from .numdiff import directional_derivative, numerical_grads, surrogate_loss
from .params import GatedParams, Params, init_params
from .spec import TBPTT, Chunks, Spec, Window, parse_truncation, segments
from .tolerances import TOLERANCES, cosine, rel_error
from .research import (TruncationSweep, adaptive_k, artbp_expectation, artbp_grads,  # issue 5
                       decay_profile, streaming_loss_and_grads, truncation_sweep)
from .research import long_profile, rtrl_grads, snap_grads, uoro_expectation, uoro_grads  # 13
from .oracle import GradientMismatch, check, identify, replay  # the gradient oracle (issue 3)

__version__ = "0.1.0"

__all__ = [
    "truncation_sweep", "TruncationSweep", "decay_profile", "adaptive_k",
    "streaming_loss_and_grads", "artbp_grads", "artbp_expectation",
    "rtrl_grads", "uoro_grads", "uoro_expectation", "snap_grads", "long_profile",
    "check", "identify", "replay", "GradientMismatch",
    "Spec", "Window", "Chunks", "TBPTT", "Params", "GatedParams", "init_params", "loss_and_grads", "predict",
    "numerical_grads", "directional_derivative", "surrogate_loss", "segments", "parse_truncation",
    "TOLERANCES", "rel_error", "cosine",
]
