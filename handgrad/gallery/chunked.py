"""Correct, in the style of stateful training loops: the sequence is cut into chunks of k steps,
each chunk is backpropagated on its own, and the hidden state is carried forward as a constant
(what `h = h.detach()` every k steps does in PyTorch). That is `Chunks(k)`.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._common import act, act_grad_from_output, squared_loss, supported


def chunked_rnn(spec, k: int):
    """A correct batched candidate computing Chunks(k) gradients (squared losses,
    output="all")."""
    supported(spec, (object,))          # spec.truncation is ignored: k decides
    as_sum = dataclasses.replace(spec, reduction="sum")
    if spec.output != "all":
        raise ValueError("chunked_rnn trains on a loss at every step (output='all')")

    def candidate(params, xs, ys, h0):
        U, W, V, b, c = params
        B, T, _ = xs.shape
        H = W.shape[0]
        loss_total = 0.0
        grads = {n: np.zeros_like(p) for n, p in params._asdict().items() if p is not None}
        grads["h0"] = np.zeros((B, H))
        h = np.zeros((B, H)) if h0 is None else h0
        n = ys.size if spec.reduction == "mean" else 1           # the mean's count, over all chunks
        for start in range(0, T, k):
            stop = min(start + k, T)
            hs = [h]                                              # the chunk's forward pass
            for t in range(start, stop):
                hs.append(act(spec.activation, xs[:, t] @ U.T + hs[-1] @ W.T + (0 if b is None else b)))
            chunk = np.stack(hs[1:], axis=1)                      # (B, L, H)
            os = chunk @ V.T + (0 if c is None else c)
            loss, dos = squared_loss(os, ys[:, start:stop], as_sum)   # this chunk's terms
            loss_total += loss / n
            dos = dos / n
            grads["V"] += np.einsum("blo,blh->oh", dos, chunk)
            if c is not None:
                grads["c"] += dos.sum(axis=(0, 1))
            dh = np.zeros((B, H))
            for j in range(stop - start, 0, -1):                  # backward within the chunk
                dh = dh + dos[:, j - 1] @ V                       # through o_t
                da = dh * act_grad_from_output(spec.activation, hs[j])   # h_t = act(a_t)
                grads["U"] += da.T @ xs[:, start + j - 1]
                grads["W"] += da.T @ hs[j - 1]
                if b is not None:
                    grads["b"] += da.sum(axis=0)
                dh = da @ W                                       # carry to h_{t-1}
            if start == 0:
                grads["h0"] += dh                                 # the first chunk reaches h_0
            h = hs[-1]                                            # detach: a constant from here
        return loss_total, grads

    candidate.__name__ = f"chunked_rnn_{k}"
    return candidate

