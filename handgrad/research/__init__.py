"""Truncation research: every Window(k) gradient at once, decay diagnostics, streaming
truncated gradients in O(k) memory, unbiased randomized truncation (ARTBP), training studies."""
from .sweep import Curve, TruncationSweep, truncation_sweep

__all__ = ["truncation_sweep", "TruncationSweep", "Curve"]
