"""One-call bridges from a PyTorch module or a JAX loss function to an oracle candidate.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps
(T for output="all", 1 for "last").

    candidate = adapters.from_torch(torch.nn.RNN(D, H, batch_first=True).double(), spec,
                                    head=torch.nn.Linear(H, O).double(), detach_every=None)
    candidate = adapters.from_jax(my_loss, names={"U": "cell/i/kernel.T", ...})
    hg.check(candidate, spec, sizes=(B, T, D, H, O))

Both return `candidate(params, xs, ys, h0) -> (loss, grads)` with handgrad's names (U, W, V,
b, c and h0). torch and jax are imported only when an adapter is built.
"""
from __future__ import annotations

import copy
from typing import Optional

from .losses import loss_count
from .spec import Spec

TORCH_LOSSES = ("half_squared", "squared", "cross_entropy", "linear")
PARAM_NAMES = ("U", "W", "V", "b", "c")


# ---------------------------------------------------------------- PyTorch


def from_torch(rnn, spec: Spec, head=None, *, detach_every: Optional[int] = None):
    """A candidate that runs a PyTorch `nn.RNN` (one layer, one direction) or `nn.RNNCell`,
    followed by the output layer `head` (an `nn.Linear(H, O)`), on handgrad's parameters.

    Parameters are mapped by name: weight_ih(_l0) = U (H, D), weight_hh(_l0) = W (H, H),
    head.weight = V (O, H), head.bias = c; PyTorch's two hidden biases enter only as their
    sum, so b is loaded into bias_ih and zeros into bias_hh, and the returned db is bias_ih's
    gradient (which equals bias_hh's; adding the two would double it). h0 (B, H) becomes the
    module's (1, B, H) initial state, batch_first or not is the module's own. The loss is the
    spec's (loss and reduction), computed in torch on head(h_t) for the spec's output steps.
    `detach_every=k` detaches the hidden state after every k steps, as a truncated-BPTT loop
    does (that is `Chunks(k)`).

    The modules are copied: yours are never modified. The copy computes in its own dtype
    (use .double(); a float32 module is judged by the float32 tolerance). When the oracle asks
    for other sizes than the module's (its search draws them; pass `sizes=` to `hg.check` to
    stay at yours), a module of the same class and options is built for those sizes.
    """
    import torch

    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a handgrad.Spec, got {type(spec).__name__}")
    cell = isinstance(rnn, torch.nn.RNNCell)
    if not (cell or isinstance(rnn, torch.nn.RNN)):
        raise ValueError(f"rnn must be a torch.nn.RNN or torch.nn.RNNCell, got "
                         f"{type(rnn).__name__}")
    if not cell and (rnn.num_layers != 1 or rnn.bidirectional or rnn.proj_size):
        raise ValueError("rnn must have one layer, one direction and no projection, got "
                         f"num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional}, "
                         f"proj_size={rnn.proj_size}")
    if rnn.nonlinearity != spec.activation:
        raise ValueError(f"spec.activation is {spec.activation!r} but the module's "
                         f"nonlinearity is {rnn.nonlinearity!r} (PyTorch's RNN has tanh and "
                         "relu only)")
    if bool(rnn.bias) != spec.bias:
        raise ValueError(f"spec.bias is {spec.bias} but the module has bias={rnn.bias}")
    wants_head = getattr(spec, "head", True)
    if wants_head and not isinstance(head, torch.nn.Linear):
        raise ValueError(f"head must be a torch.nn.Linear(H, O) (the output layer V, c), got "
                         f"{type(head).__name__}")
    if not wants_head and head is not None:
        raise ValueError("spec.head is False, so head must be None")
    if head is not None and (head.in_features != rnn.hidden_size
                             or (head.bias is not None) != spec.bias):
        raise ValueError(f"head must be nn.Linear({rnn.hidden_size}, O, bias={spec.bias}), got "
                         f"nn.Linear({head.in_features}, {head.out_features}, "
                         f"bias={head.bias is not None})")
    if spec.loss not in TORCH_LOSSES:
        raise ValueError(f"from_torch computes the losses {TORCH_LOSSES}, got "
                         f"spec.loss={spec.loss!r}")
    if detach_every is not None and (isinstance(detach_every, bool)
                                     or not isinstance(detach_every, int) or detach_every < 1):
        raise ValueError(f"detach_every must be an integer >= 1 or None, got {detach_every!r}")
    template = (copy.deepcopy(rnn), None if head is None else copy.deepcopy(head))
    modules = {_torch_sizes(*template): template}

    def candidate(params, xs, ys, h0):
        D, H, O = params.U.shape[1], params.W.shape[0], params.W.shape[0]
        if params.V is not None:
            O = params.V.shape[0]
        if (D, H, O) not in modules:
            modules[(D, H, O)] = _torch_resized(*template, D, H, O)
        rnn_, head_ = modules[(D, H, O)]
        return _torch_run(rnn_, head_, spec, params, xs, ys, h0, detach_every)

    candidate.__name__ = f"torch_{type(rnn).__name__}"
    return candidate


def _weight(rnn, name: str):
    """weight_ih / weight_hh / bias_ih / bias_hh of an RNNCell, or the _l0 ones of an RNN."""
    return getattr(rnn, name) if hasattr(rnn, name) else getattr(rnn, f"{name}_l0")


def _torch_sizes(rnn, head) -> tuple:
    H = rnn.hidden_size
    return (rnn.input_size, H, H if head is None else head.out_features)


def _torch_resized(rnn, head, D: int, H: int, O: int):
    """Modules of the same class, options and dtype as `rnn`, `head`, for other sizes."""
    import torch

    dtype = _weight(rnn, "weight_ih").dtype
    options = dict(nonlinearity=rnn.nonlinearity, bias=rnn.bias)
    if not isinstance(rnn, torch.nn.RNNCell):
        options["batch_first"] = rnn.batch_first
    new_rnn = type(rnn)(D, H, **options).to(dtype)
    new_head = None if head is None else torch.nn.Linear(H, O, bias=head.bias is not None).to(
        head.weight.dtype)
    return new_rnn, new_head


def _torch_run(rnn, head, spec, params, xs, ys, h0, detach_every):
    """Load params, run forward and backward, return (loss, grads) with handgrad's names."""
    import torch

    w_ih, w_hh = _weight(rnn, "weight_ih"), _weight(rnn, "weight_hh")
    dtype = w_ih.dtype
    leaves = [w_ih, w_hh]
    with torch.no_grad():                                    # handgrad's params -> the modules
        w_ih.copy_(torch.as_tensor(params.U))
        w_hh.copy_(torch.as_tensor(params.W))
        if spec.bias:
            b_ih, b_hh = _weight(rnn, "bias_ih"), _weight(rnn, "bias_hh")
            b_ih.copy_(torch.as_tensor(params.b))                # b = bias_ih + bias_hh
            b_hh.zero_()
            leaves += [b_ih, b_hh]
        if head is not None:
            head.weight.copy_(torch.as_tensor(params.V))
            leaves.append(head.weight)
            if head.bias is not None:
                head.bias.copy_(torch.as_tensor(params.c))
                leaves.append(head.bias)
    for p in leaves:
        p.grad = None
    x = torch.as_tensor(xs, dtype=dtype)                     # (B, T, D)
    B, T, _ = x.shape
    H = w_hh.shape[0]
    h_init = (torch.zeros(B, H, dtype=dtype) if h0 is None
              else torch.tensor(h0, dtype=dtype)).requires_grad_(True)
    hs = _torch_states(rnn, x, h_init, detach_every or T)    # (B, T, H)
    used = hs if spec.output == "all" else hs[:, -1:]        # (B, S, H)
    os = used if head is None else head(used)                # (B, S, O)
    loss = _torch_loss(os, ys, spec)
    loss.backward()
    grads = {"U": w_ih.grad, "W": w_hh.grad, "h0": h_init.grad}
    if spec.bias:
        grads["b"] = _weight(rnn, "bias_ih").grad                # == bias_hh's gradient
    if head is not None:
        grads["V"] = head.weight.grad
        if head.bias is not None:
            grads["c"] = head.bias.grad
    return float(loss.detach()), grads


def _torch_states(rnn, x, h_init, k: int):
    """h_1..h_T (B, T, H) from x (B, T, D), the state detached after every k steps."""
    import torch

    T = x.shape[1]
    if isinstance(rnn, torch.nn.RNNCell):
        h, states = h_init, []
        for t in range(T):
            if t > 0 and t % k == 0:
                h = h.detach()                                # truncate here
            h = rnn(x[:, t], h)
            states.append(h)
        return torch.stack(states, dim=1)
    h, chunks = h_init[None], []                              # (1, B, H)
    for start in range(0, T, k):
        part = x[:, start:start + k]
        out, h = rnn(part if rnn.batch_first else part.transpose(0, 1), h)
        chunks.append(out if rnn.batch_first else out.transpose(0, 1))
        h = h.detach()                                        # truncate here
    return torch.cat(chunks, dim=1)


def _torch_loss(os, ys, spec):
    """The spec's loss of outputs os (B, S, O) against ys, in torch."""
    import torch

    B, S, O = os.shape
    if spec.loss == "cross_entropy":
        y = torch.as_tensor(ys).reshape(B, S)
        total = torch.nn.functional.cross_entropy(os.reshape(B * S, O), y.reshape(-1),
                                                  reduction="sum")
    else:
        y = torch.as_tensor(ys, dtype=os.dtype).reshape(B, S, O)
        if spec.loss == "linear":
            total = (os * y).sum()
        else:
            total = ((os - y) ** 2).sum() * (0.5 if spec.loss == "half_squared" else 1.0)
    return total / loss_count(spec.loss, spec.reduction, (S, B, O))


# ---------------------------------------------------------------- JAX


def from_jax(loss_fn, names: Optional[dict] = None, *, jit: bool = True):
    """A candidate from a JAX loss function `loss_fn(params, xs, ys, h0) -> scalar`.

    - `params`: an `hg.Params(U, W, V, b, c)` of jax arrays when `names` is None; otherwise
      your own nested dict, built from `names`, which maps handgrad's names to paths in it,
      with ".T" when your array is the transpose of handgrad's. flax's SimpleCell layout:
      `{"U": "cell/i/kernel.T", "W": "cell/h/kernel.T", "b": "cell/i/bias",
      "V": "head/kernel.T", "c": "head/bias"}` (kernels are (in, out)).
    - `xs` (B, T, D), `ys` as the spec says, `h0` (B, H): zeros when the oracle passes None, so
      that your function always gets an array (and dL/dh0 is checked).

    The gradient is `jax.value_and_grad(loss_fn, argnums=(0, 3))`, jit-compiled (`jit=True`):
    JAX compiles once per array shape, so check it at fixed sizes
    (`hg.check(candidate, spec, sizes=(B, T, D, H, O))`). Arrays are float64 when
    `jax_enable_x64` is on, else float32 (and judged by the float32 tolerance).
    """
    import jax
    import jax.numpy as jnp

    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    paths = _check_names(names)
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 3))
    if jit:
        grad_fn = jax.jit(grad_fn)

    def candidate(params, xs, ys, h0):
        B, H = xs.shape[0], params.W.shape[0]
        arrays = {n: None if v is None else jnp.asarray(v) for n, v in params._asdict().items()}
        tree = type(params)(**arrays) if paths is None else _to_tree(arrays, paths)
        h_start = jnp.zeros((B, H), arrays["W"].dtype) if h0 is None else jnp.asarray(h0)
        loss, (g_tree, g_h0) = grad_fn(tree, jnp.asarray(xs), jnp.asarray(ys), h_start)
        grads = (dict(g_tree._asdict()) if paths is None else _from_tree(g_tree, paths))
        grads = {n: g for n, g in grads.items() if g is not None and arrays.get(n) is not None}
        grads["h0"] = g_h0
        return loss, grads

    candidate.__name__ = f"jax_{getattr(loss_fn, '__name__', 'loss')}"
    return candidate


def _check_names(names):
    """None, or {handgrad name: "path/in/your/tree" (+ ".T")} -> {name: (keys, transposed)}."""
    if names is None:
        return None
    if not isinstance(names, dict):
        raise ValueError(f"names must be a dict of handgrad names to paths, got "
                         f"{type(names).__name__}")
    unknown = sorted(set(map(str, names)) - set(PARAM_NAMES))
    missing = [n for n in ("U", "W") if n not in names]
    if unknown or missing:
        raise ValueError(f"names must map {', '.join(PARAM_NAMES)} (U and W required; V, c "
                         f"unless the spec has no head; b, c with bias) to paths, got "
                         f"unknown {unknown}, missing {missing}")
    out = {}
    for n, path in names.items():
        if not isinstance(path, str) or not path.strip("/").removesuffix(".T"):
            raise ValueError(f"names[{n!r}] must be a path such as 'cell/i/kernel.T', got "
                             f"{path!r}")
        transposed = path.endswith(".T")
        keys = tuple(path.removesuffix(".T").strip("/").split("/"))
        out[n] = (keys, transposed)
    return out


def _to_tree(arrays: dict, paths: dict) -> dict:
    """handgrad's arrays -> your nested dict (transposed where the path says .T)."""
    tree: dict = {}
    for n, (keys, transposed) in paths.items():
        value = arrays.get(n)
        if value is None:
            continue
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value.T if transposed else value
    return tree


def _from_tree(tree: dict, paths: dict) -> dict:
    """Your gradient tree -> handgrad's names."""
    out = {}
    for n, (keys, transposed) in paths.items():
        node = tree
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out[n] = node.T if transposed else node
    return out
