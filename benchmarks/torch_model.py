"""The same RNN in PyTorch (float64, CPU): `nn.RNN` + `nn.Linear` and autograd.

Size letters: B batch, T time steps, D input features, H hidden units, O outputs.
`nn.RNN` knows only tanh and ReLU, so a sigmoid RNN (the tutorial's) is the loop a PyTorch user
writes instead: `h = torch.sigmoid(x_t @ U.T + h @ W.T)` per step, differentiated by autograd.
Window(k) many-to-one runs the first T - k - 1 steps under `torch.no_grad()` and the last k + 1
with gradient (the usual `detach`); Window(k) many-to-many has no natural `nn.RNN` form (each loss
step would need its own window) and is not benchmarked.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import handgrad as hg
from handgrad.params import GatedParams


class TorchModel(NamedTuple):
    fn: Optional[Callable[[], tuple]]   # () -> (loss, grads: hg.Params of numpy arrays)
    note: str                           # what was built, or why it was not


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _window_cut(spec: hg.Spec, T: int) -> int:
    """Steps 1..cut run without gradient (0: full BPTT)."""
    k = T if spec.truncation is None else spec.truncation.k
    return max(T - k - 1, 0)


def make_value_and_grad(spec: hg.Spec, problem) -> TorchModel:
    """A closure computing the loss and every gradient of `problem` (xs (B, T, D), h_0 = 0)."""
    import torch

    if spec.loss == "cross_entropy" or not (spec.truncation is None
                                            or isinstance(spec.truncation, hg.Window)):
        return TorchModel(None, "only squared losses with full BPTT or Window(k) are built")
    B, T, D = problem.xs.shape
    if spec.output == "all" and _window_cut(spec, T) > 0:
        return TorchModel(None, "Window(k) many-to-many: no nn.RNN form")
    cut = _window_cut(spec, T)
    f64 = torch.float64
    xs = torch.from_numpy(problem.xs)
    ys = torch.from_numpy(problem.ys)
    U, W, V, b, c = problem.params
    H = W.shape[0]
    lin = torch.nn.Linear(H, V.shape[0], bias=spec.bias, dtype=f64)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(V))
        if spec.bias:
            lin.bias.copy_(torch.from_numpy(c))

    if spec.activation == "tanh":
        rnn = torch.nn.RNN(D, H, nonlinearity="tanh", bias=spec.bias, batch_first=True, dtype=f64)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(U))
            rnn.weight_hh_l0.copy_(torch.from_numpy(W))
            if spec.bias:
                rnn.bias_ih_l0.copy_(torch.from_numpy(b))
                rnn.bias_hh_l0.zero_()                     # b is bias_ih; torch's second bias is 0
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, lin.weight,
                   rnn.bias_ih_l0 if spec.bias else None, lin.bias if spec.bias else None)

        def hidden(h):
            if cut > 0:
                with torch.no_grad():
                    _, h = rnn(xs[:, :cut])
            out, h_n = rnn(xs[:, cut:], h)
            return out if spec.output == "all" else h_n[0]    # (B, T, H) or (B, H)
        note = "nn.RNN + nn.Linear"
    else:
        Ut, Wt = (torch.from_numpy(a.copy()).requires_grad_() for a in (U, W))
        bt = torch.from_numpy(b.copy()).requires_grad_() if spec.bias else None
        weights = (Ut, Wt, lin.weight, bt, lin.bias if spec.bias else None)

        def run(h, lo, hi):
            xu = xs[:, lo:hi] @ Ut.T if bt is None else xs[:, lo:hi] @ Ut.T + bt
            steps = []
            for t in range(hi - lo):
                h = torch.sigmoid(xu[:, t] + h @ Wt.T)
                steps.append(h)
            return h, steps

        def hidden(h):
            h = torch.zeros(B, H, dtype=f64)
            if cut > 0:
                with torch.no_grad():
                    h, _ = run(h, 0, cut)
            h, steps = run(h, cut, T)
            return torch.stack(steps, 1) if spec.output == "all" else h
        note = "autograd loop (nn.RNN has no sigmoid)"

    scale = 0.5 if spec.loss == "half_squared" else 1.0

    def value_and_grad():
        for w in weights:
            if w is not None:
                w.grad = None
        err = lin(hidden(None)) - ys
        loss = scale * (err * err).sum()
        if spec.reduction == "mean":
            loss = loss / err.numel()
        loss.backward()
        grads = hg.Params(*(None if w is None else w.grad.numpy() for w in weights))
        return loss.item(), grads

    return TorchModel(value_and_grad, note)


def make_gated_value_and_grad(spec: hg.Spec, problem) -> TorchModel:
    """`nn.GRU` / `nn.LSTM` + `nn.Linear`, float64, full BPTT, h_0 = c_0 = 0: a closure
    computing the loss and every gradient of `problem` as `GatedParams`."""
    import torch

    if spec.loss == "cross_entropy" or spec.truncation is not None or spec.gru_reset != "after":
        return TorchModel(None, "only squared losses, full BPTT, GRU reset after")
    B, T, D = problem.xs.shape
    f64 = torch.float64
    xs = torch.from_numpy(problem.xs)
    ys = torch.from_numpy(problem.ys)
    W_ih, W_hh, b_ih, b_hh, V, c = problem.params
    H = W_hh.shape[1]
    kind = torch.nn.GRU if spec.cell == "gru" else torch.nn.LSTM
    rnn = kind(D, H, bias=spec.bias, batch_first=True, dtype=f64)
    lin = torch.nn.Linear(H, V.shape[0], bias=spec.bias, dtype=f64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(W_ih))
        rnn.weight_hh_l0.copy_(torch.from_numpy(W_hh))
        lin.weight.copy_(torch.from_numpy(V))
        if spec.bias:
            rnn.bias_ih_l0.copy_(torch.from_numpy(b_ih))
            rnn.bias_hh_l0.copy_(torch.from_numpy(b_hh))
            lin.bias.copy_(torch.from_numpy(c))
    weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 if spec.bias else None,
               rnn.bias_hh_l0 if spec.bias else None, lin.weight, lin.bias if spec.bias else None)
    scale = 0.5 if spec.loss == "half_squared" else 1.0

    def value_and_grad():
        for w in weights:
            if w is not None:
                w.grad = None
        out, _ = rnn(xs)                                   # (B, T, H)
        hs = out if spec.output == "all" else out[:, -1]
        err = lin(hs) - ys
        loss = scale * (err * err).sum()
        if spec.reduction == "mean":
            loss = loss / err.numel()
        loss.backward()
        grads = GatedParams(*(None if w is None else w.grad.numpy() for w in weights))
        return loss.item(), grads

    return TorchModel(value_and_grad, f"nn.{kind.__name__} + nn.Linear")
