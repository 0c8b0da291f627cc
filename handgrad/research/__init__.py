"""Truncation research: every Window(k) gradient at once, decay diagnostics and adaptive k,
truncated gradients streamed in O(k) memory, unbiased randomized truncation (ARTBP), and
training under truncation. See docs/research.md.
Online estimators beside truncation (RTRL, UORO, SnAp-n), one metric set for all of them, and the
long-sequence profile: docs/estimators.md."""
from .artbp import (Expectation, TradeoffRow, artbp_expectation, artbp_grads, artbp_tradeoff,
                    outcomes, sample_passes)
from .decay import DecayProfile, JacobianFacts, adaptive_k, decay_profile, fit_rate, jacobian_facts
from .streaming import StreamResult, array_blocks, streaming_loss_and_grads
from .sweep import Curve, TruncationSweep, truncation_sweep
from .rtrl import masked_rtrl_grads, rtrl_grads                                   # issue 13
from .snap import snap_grads, snap_pattern
from .uoro import UoroExpectation, uoro_expectation, uoro_grads
from .estimators import Row, estimator_grads, measure
from .online import OnlineRun, recall_batch, recall_stream, train_online
from .longseq import LongProfile, array_source, long_profile, recall_source

__all__ = [
    "truncation_sweep", "TruncationSweep", "Curve",
    "decay_profile", "DecayProfile", "adaptive_k", "fit_rate", "jacobian_facts", "JacobianFacts",
    "streaming_loss_and_grads", "StreamResult", "array_blocks",
    "artbp_grads", "artbp_expectation", "artbp_tradeoff", "outcomes", "sample_passes",
    "Expectation", "TradeoffRow",
    "rtrl_grads", "masked_rtrl_grads", "snap_grads", "snap_pattern", "uoro_grads",
    "uoro_expectation", "UoroExpectation", "measure", "estimator_grads", "Row", "train_online",
    "OnlineRun", "recall_batch", "recall_stream", "long_profile", "LongProfile", "array_source",
    "recall_source",
]
