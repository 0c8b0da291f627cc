"""Online training on an endless stream: truncated BPTT against RTRL, UORO and SnAp.

Size letters: B parallel streams, D inputs, H hidden units, O outputs, k a truncation length.

Every scheme sees the same stream, from the same initial parameters, and makes one optimizer
update per step from that step's loss term (Chunks(k): one update per k steps, from the k loss
terms of the chunk, as PyTorch's `h.detach()` training loop does). The loss recorded at step t is
the one the model made online, before learning from it.

- "rtrl", "uoro", "snap:N": the forward-mode methods; their carry is advanced with the current
  parameters at every step (the usual online approximation: the carry mixes influences computed
  under the parameters of earlier steps).
- "window:K": the gradient of loss t backpropagated K steps (to h_{t-K-1}, held constant), by
  `hg.loss_and_grads` on the last K + 1 inputs from the stored state: truncated BPTT, TBPTT(1, K+1).
- "chunks:K": `hg.loss_and_grads` over each chunk of K steps from the chunk's first state.

The delayed-recall task: x_t in {-1, +1} at random, y_t = x_{t-d} (y_t = 0 for t <= d): a
dependency exactly d steps long. A truncation that reaches back k < d steps has no gradient signal
about it at all; an unbiased method does.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterator, NamedTuple

import numpy as np

from .._threads import blas_threads
from ..losses import loss_and_output_grad
from ..params import Params
from ..spec import Spec
from ._online import check_family, forward_step, split_theta, theta
from .rtrl import rtrl_method
from .snap import snap1_method, snap_pattern, snapn_method
from .uoro import random_signs, uoro_method

FORWARD_SCHEMES = ("rtrl", "uoro", "snap")


def parse_online_scheme(text: str):
    """'rtrl', 'uoro', 'snap:N', 'window:K' or 'chunks:K' -> (kind, number or None)."""
    t = str(text).strip().lower()
    kind, _, arg = t.partition(":")
    if kind in ("rtrl", "uoro") and not arg:
        return kind, None
    try:
        n = int(arg)
    except ValueError:
        n = None
    lowest = {"snap": 1, "window": 0, "chunks": 1}.get(kind)
    if lowest is None or n is None or n < lowest:
        raise ValueError(f"scheme must be 'rtrl', 'uoro', 'snap:N' (N >= 1), 'window:K' (K >= 0) "
                         f"or 'chunks:K' (K >= 1), got {text!r}")
    return kind, n


def recall_batch(B: int, T: int, delay: int, seed: int = 0):
    """A finite delayed-recall problem: xs (B, T, 1) of +-1, ys (B, T, 1) with ys[:, t] = xs[:, t - d]
    (0 for the first d steps)."""
    rng = np.random.default_rng(seed)
    xs = rng.integers(0, 2, (B, T, 1)) * 2.0 - 1.0
    ys = np.zeros((B, T, 1))
    ys[:, delay:] = xs[:, :T - delay]
    return xs, ys


def recall_stream(B: int, delay: int, seed: int = 0) -> Iterator:
    """The endless delayed-recall stream: (x_t (B, 1), y_t (B, 1)) pairs."""
    rng = np.random.default_rng(seed)
    past = deque([np.zeros((B, 1))] * delay, maxlen=delay + 1)
    while True:
        x = rng.integers(0, 2, (B, 1)) * 2.0 - 1.0
        past.append(x)
        yield x, past[0]


class OnlineRun(NamedTuple):
    scheme: str
    steps: np.ndarray         # (R,) the last step of each reporting block
    loss: np.ndarray          # (R,) mean online loss per stream and step over the block
    seconds: float
    params: Params            # at the end


def _forward_method(kind: str, n, params: Params, rng):
    """A function of the batch size B giving the scheme's `Method`."""
    if kind == "rtrl":
        return lambda B: rtrl_method()
    if kind == "uoro":
        return lambda B: uoro_method(random_signs(rng, B, params.W.shape[0]))
    if n == 1:
        return lambda B: snap1_method()
    return lambda B: snapn_method(snap_pattern(params.W, n))


def train_online(scheme: str, params: Params, spec: Spec, stream, steps: int, optimizer,
                 report_every: int = 500, seed: int = 0, clip=None) -> OnlineRun:
    """Train `params` online on `stream` for `steps` steps with `scheme`.

    spec: an Elman `Spec` with output="all" (its truncation is ignored: the scheme says which
    gradient); stream: an iterator of (x_t (B, D), y_t (B, O)) pairs; optimizer: a
    `handgrad.train.optim.Optimizer`; clip: a `handgrad.train.optim.Clip` or None. Gradients are
    the mean over the B streams. seed: UORO's signs.
    """
    check_family(spec, "train_online", truncation_ok=True)
    D, H, O = params.sizes
    work = H * H * (H + D + 1) if kind_of(scheme) in ("rtrl", "snap") else H * H
    with blas_threads(work * 8):                  # small products: one BLAS thread is faster
        return _train_online(scheme, params, spec, stream, steps, optimizer, report_every, seed,
                             clip)


def kind_of(scheme: str) -> str:
    return parse_online_scheme(scheme)[0]


def _train_online(scheme, params, spec, stream, steps, optimizer, report_every, seed, clip):
    from .. import loss_and_grads                  # the public hand BPTT
    from ..train.optim import clip as apply_clip
    if spec.output != "all":
        raise ValueError(f"online training needs a loss at every step (spec.output='all'), "
                         f"got {spec.output!r}")
    kind, n = parse_online_scheme(scheme)
    step_spec = Spec(**{**spec.__dict__, "truncation": None, "reduction": "sum"})
    rng = np.random.default_rng(seed)
    state = optimizer.init(params)
    D, H, O = params.sizes
    bias = params.b is not None
    losses, ends, block = [], [], []
    t0 = time.perf_counter()
    h = None
    carry = method = None
    hist = deque(maxlen=(n + 2) if kind == "window" else None)    # (x, y, state before x)
    chunk = []
    for t in range(1, steps + 1):
        x, y = next(stream)
        B = x.shape[0]
        if h is None:
            h = np.zeros((B, H))
            if kind in FORWARD_SCHEMES:
                method = _forward_method(kind, n, params, rng)(B)
                carry = method.init(B, H, H + D + (1 if bias else 0))
        Th = theta(params)
        out = forward_step(Th, h, x, spec.activation, bias)
        o = out.h @ params.V.T + (params.c if bias else 0.0)       # o_t = V h_t + c
        value, do = loss_and_output_grad(o[None], y[None], spec.loss, "sum")
        block.append(value / B)
        grads = None
        if kind in FORWARD_SCHEMES:
            carry = method.advance(carry, params.W, out.z, out.d)
            do = do[0]
            dU, dW, db = split_theta(method.readout(carry, do @ params.V).sum(axis=0), D, bias)
            grads = Params(dU, dW, do.T @ out.h, db, do.sum(axis=0) if bias else None)
        elif kind == "window":
            hist.append((x, y, h))
            if len(hist) > n + 1:
                hist.popleft()
            xs_w = np.stack([e[0] for e in hist], axis=1)          # (B, m, D), m <= K + 1
            _, grads = loss_and_grads(params, xs_w, y, Spec(**{**step_spec.__dict__,
                                                              "output": "last"}), h0=hist[0][2])
        else:                                                      # chunks
            chunk.append((x, y, h))
            if len(chunk) == n:
                xs_c = np.stack([e[0] for e in chunk], axis=1)
                ys_c = np.stack([e[1] for e in chunk], axis=1)
                _, grads = loss_and_grads(params, xs_c, ys_c, step_spec, h0=chunk[0][2])
                chunk = []
        h = out.h
        if grads is not None:
            grads = Params(*(None if g is None else g / B for g in grads))
            if clip is not None:
                grads = apply_clip(grads, clip)
            params, state = optimizer.update(params, grads, state)
        if t % report_every == 0:
            losses.append(float(np.mean(block)))
            ends.append(t)
            block = []
    return OnlineRun(str(scheme), np.array(ends), np.array(losses), time.perf_counter() - t0,
                     params)
