"""Proof of teeth: real-world RNN implementations, wrong and right, as oracle candidates.

Wrong (each must be caught by `hg.check`):
  - `classic.rnn(spec, mistake)` for every mistake in `classic.MISTAKES`;
  - `tutorial.tutorial_rnn()`, the 2019 tutorial's published backward pass.
Right (each must pass, and `hg.identify` must name its truncation):
  - `column.column_rnn(spec)`: one sample at a time, column vectors, full or Window(k), float64
    or float32;
  - `chunked.chunked_rnn(spec, k)`: numpy, hidden state carried as a constant every k steps;
  - `torch_style.torch_rnn(spec, detach_every)`: PyTorch autograd with h.detach() (needs torch).
"""
from .chunked import chunked_rnn
from .classic import MISTAKES, rnn
from .column import column_rnn
from .tutorial import tutorial_rnn

__all__ = ["MISTAKES", "rnn", "column_rnn", "chunked_rnn", "tutorial_rnn"]
