"""Benchmarks for handgrad: one gradient against JAX, PyTorch and a tutorial-style loop, the
machine's matmul rate, the tutorial's training, the truncation sweep, the oracle and memory.

Run `python benchmarks/run.py` (see `--help`). Size letters as in handgrad: B batch, T time steps,
D input features, H hidden units, O outputs.
"""
