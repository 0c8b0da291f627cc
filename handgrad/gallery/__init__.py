"""Proof of teeth: real-world RNN implementations, wrong and right, as oracle candidates.

Wrong (each must be caught by `hg.check`):
  - `classic.rnn(spec, mistake)` for every mistake in `classic.MISTAKES`;
  - `tutorial.tutorial_rnn()`, the 2019 tutorial's published backward pass.
Right (each must pass, and `hg.identify` must name its truncation):
  - `column.column_rnn(spec)`: one sample at a time, column vectors, full or Window(k), float64
    or float32;
  - `chunked.chunked_rnn(spec, k)`: numpy, hidden state carried as a constant every k steps;
  - `torch_style.torch_rnn(spec, detach_every)`: PyTorch autograd with h.detach() (needs torch);
  - `layers.elman_layer(spec)`, `layers.lstm_layer(spec)`: layer libraries' forward/backward pairs
    with caches (CS231n's style), checked as layers (head=False, loss="linear", with dx);
  - `d2l_gru.d2l_gru(spec)`: Dive into Deep Learning's GRU layout (reset before), hand backward.
Wrong, the layer and gated styles: the same functions with `mistake=` one of LAYER_MISTAKES,
LSTM_MISTAKES, GRU_MISTAKES.
"""
from .chunked import chunked_rnn
from .classic import MISTAKES, rnn
from .column import column_rnn
from .d2l_gru import GRU_MISTAKES, d2l_gru
from .layers import LAYER_MISTAKES, LSTM_MISTAKES, elman_layer, lstm_layer
from .tutorial import tutorial_rnn

__all__ = ["MISTAKES", "rnn", "column_rnn", "chunked_rnn", "tutorial_rnn", "elman_layer",
           "lstm_layer", "d2l_gru", "LAYER_MISTAKES", "LSTM_MISTAKES", "GRU_MISTAKES"]
