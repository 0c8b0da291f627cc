"""Truncation research: every Window(k) gradient at once, decay diagnostics and adaptive k,
truncated gradients streamed in O(k) memory, unbiased randomized truncation (ARTBP), and
training under truncation. See the README, section "Truncation research"."""
from .artbp import (Expectation, TradeoffRow, artbp_expectation, artbp_grads, artbp_tradeoff,
                    outcomes, sample_passes)
from .decay import DecayProfile, JacobianFacts, adaptive_k, decay_profile, fit_rate, jacobian_facts
from .streaming import StreamResult, array_blocks, streaming_loss_and_grads
from .sweep import Curve, TruncationSweep, truncation_sweep

__all__ = [
    "truncation_sweep", "TruncationSweep", "Curve",
    "decay_profile", "DecayProfile", "adaptive_k", "fit_rate", "jacobian_facts", "JacobianFacts",
    "streaming_loss_and_grads", "StreamResult", "array_blocks",
    "artbp_grads", "artbp_expectation", "artbp_tradeoff", "outcomes", "sample_passes",
    "Expectation", "TradeoffRow",
]
