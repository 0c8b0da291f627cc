"""Correct, in PyTorch: `nn.RNN` + `nn.Linear`, autograd, and `h.detach()` every k steps.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

PyTorch's RNN has two hidden biases, `bias_ih` and `bias_hh`, that always appear as their sum:
a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh. So `b` maps onto b_ih + b_hh (here b_ih = b,
b_hh = 0), and the gradient of `b` equals the gradient of either one. `nn.Linear`'s bias is c.
Requires torch; float64 throughout (`dtype=torch.float32` gives a float32 candidate).
"""
from __future__ import annotations


def torch_rnn(spec, detach_every=None, dtype=None):
    """A PyTorch candidate for `spec` (squared losses). `detach_every=k` detaches the hidden
    state every k steps (PyTorch's truncated BPTT; Chunks(k) when k divides T)."""
    import torch

    from ._common import supported

    supported(spec, (object,))               # the truncation is what detach_every says
    dtype = torch.float64 if dtype is None else dtype

    def candidate(params, xs, ys, h0):
        U, W, V, b, c = params
        D, H, O = U.shape[1], W.shape[0], V.shape[0]
        with_bias = b is not None
        rnn = torch.nn.RNN(D, H, nonlinearity=spec.activation, bias=with_bias,
                           batch_first=True).to(dtype)
        head = torch.nn.Linear(H, O, bias=with_bias).to(dtype)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.as_tensor(U))
            rnn.weight_hh_l0.copy_(torch.as_tensor(W))
            head.weight.copy_(torch.as_tensor(V))
            if with_bias:
                rnn.bias_ih_l0.copy_(torch.as_tensor(b))      # b = b_ih + b_hh
                rnn.bias_hh_l0.zero_()
                head.bias.copy_(torch.as_tensor(c))
        x = torch.as_tensor(xs, dtype=dtype)
        y = torch.as_tensor(ys, dtype=dtype)
        B, T, _ = x.shape
        h_init = torch.zeros(B, H, dtype=dtype) if h0 is None else torch.as_tensor(h0, dtype=dtype)
        h_init.requires_grad_(True)
        k = T if detach_every is None else detach_every
        h, outs = h_init[None], []
        for start in range(0, T, k):
            if start > 0:
                h = h.detach()                                # truncate here
            seq, h = rnn(x[:, start:start + k], h)
            outs.append(seq)
        hs = torch.cat(outs, dim=1)                           # (B, T, H)
        o = head(hs if spec.output == "all" else hs[:, -1])
        err = o - y
        scale = 0.5 if spec.loss == "half_squared" else 1.0
        loss = scale * (err ** 2).sum()
        if spec.reduction == "mean":
            loss = loss / err.numel()
        loss.backward()
        grads = {"U": rnn.weight_ih_l0.grad, "W": rnn.weight_hh_l0.grad, "V": head.weight.grad,
                 "h0": h_init.grad}
        if with_bias:
            grads.update(b=rnn.bias_ih_l0.grad, c=head.bias.grad)   # d/db = d/db_ih = d/db_hh
        return loss.detach(), grads

    candidate.__name__ = f"torch_rnn_detach_{detach_every}" if detach_every else "torch_rnn"
    return candidate
