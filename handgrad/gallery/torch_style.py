"""Correct, in PyTorch: an RNN cell written with nn.RNN's parameters, autograd, and
`h.detach()` every k steps.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

PyTorch's RNN has two hidden biases, `bias_ih` and `bias_hh`, that always appear as their sum:
a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh. So `b` maps onto b_ih + b_hh (here b_ih = b,
b_hh = 0), and the gradient of `b` equals the gradient of either one. The output bias is c.
Requires torch; float64 throughout (`dtype=torch.float32` gives a float32 candidate).
"""
from __future__ import annotations

import numpy as np


def torch_rnn(spec, detach_every=None, dtype=None):
    """A PyTorch candidate for `spec` (squared losses). `detach_every=k` detaches the hidden
    state every k steps (PyTorch's truncated BPTT: Chunks(k), for every T).

    The cell is written out (nn.RNN has no sigmoid), with nn.RNN's parameter names and its two
    hidden biases: a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh.
    """
    import torch

    from ._common import supported

    supported(spec, (object,))               # the truncation is what detach_every says
    dtype = torch.float64 if dtype is None else dtype
    act = torch.tanh if spec.activation == "tanh" else torch.sigmoid

    def candidate(params, xs, ys, h0):
        def leaf(a):
            return torch.tensor(a, dtype=dtype, requires_grad=True)
        U, W, V, b, c = params
        H = W.shape[0]
        weight_ih, weight_hh, head = leaf(U), leaf(W), leaf(V)
        if b is not None:
            bias_ih, bias_hh, head_bias = leaf(b), leaf(0 * b), leaf(c)   # b = b_ih + b_hh
        x = torch.as_tensor(xs, dtype=dtype)
        y = torch.as_tensor(ys, dtype=dtype)
        B, T, _ = x.shape
        h_init = leaf(np.zeros((B, H)) if h0 is None else h0)
        k = T if detach_every is None else detach_every
        h, states = h_init, []
        for t in range(T):
            if t > 0 and t % k == 0:
                h = h.detach()                                # truncate here
            a = x[:, t] @ weight_ih.T + h @ weight_hh.T
            if b is not None:
                a = a + bias_ih + bias_hh
            h = act(a)
            states.append(h)
        hs = torch.stack(states, dim=1)                       # (B, T, H)
        o = (hs if spec.output == "all" else hs[:, -1]) @ head.T
        if b is not None:
            o = o + head_bias
        err = o - y
        scale = 0.5 if spec.loss == "half_squared" else 1.0
        loss = scale * (err ** 2).sum()
        if spec.reduction == "mean":
            loss = loss / err.numel()
        loss.backward()
        grads = {"U": weight_ih.grad, "W": weight_hh.grad, "V": head.grad, "h0": h_init.grad}
        if b is not None:
            grads.update(b=bias_ih.grad, c=head_bias.grad)    # d/db = d/db_ih = d/db_hh
        return loss.detach(), grads

    candidate.__name__ = f"torch_rnn_detach_{detach_every}" if detach_every else "torch_rnn"
    return candidate
