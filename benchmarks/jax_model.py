"""A tight JAX model of the same RNN for the speed comparison: `lax.scan`, `jax.jit`,
`jax.value_and_grad`. (The `reference` package is the readable oracle; this one is written to be
fast, and the benchmark checks once that its gradient agrees with handgrad's.)

Size letters: B batch, T time steps, D input features, H hidden units, O outputs.
Window(k) truncation:
- many-to-one: the first T - k - 1 steps run under `stop_gradient`, the last k + 1 with gradient;
- many-to-many: the states h_0..h_T are computed once and held constant; then every loss step t
  re-runs its own window of k + 1 steps from h_{t-k-1}, all T windows at once as one batch
  (a scan over the k + 1 window offsets whose carry is (T, B, H)); steps before t = 1 are masked.
"""
from __future__ import annotations

import handgrad as hg
from handgrad.params import GatedParams


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


def _loss_fn(spec: hg.Spec):
    """loss(os (S, B, O), ys) -> scalar, as the contract defines it."""
    jnp = _jax().numpy

    def loss(os, ys):
        S, B, O = os.shape
        if spec.loss == "cross_entropy":
            logp = _jax().nn.log_softmax(os, axis=-1)
            total = -jnp.sum(jnp.take_along_axis(logp, ys[..., None], axis=-1))
            count = S * B
        else:
            err = os - ys
            total = jnp.sum(err * err) * (0.5 if spec.loss == "half_squared" else 1.0)
            count = S * B * O
        return total / count if spec.reduction == "mean" else total

    return loss


def make_value_and_grad(spec: hg.Spec):
    """A jitted `f(params, xs, ys, h0) -> (loss, grads: Params)`.

    params: `hg.Params` of jax arrays; xs (B, T, D); ys (B, O) | (B, T, O); h0 (B, H).
    Truncation: None or Window(k).
    """
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    trunc = spec.truncation
    if trunc is not None and not isinstance(trunc, hg.Window):
        raise ValueError(f"the JAX benchmark model supports truncation None or Window(k), "
                         f"got {trunc!r}")
    act = jax.nn.sigmoid if spec.activation == "sigmoid" else jnp.tanh
    loss_of = _loss_fn(spec)

    def run(W, xu, h):
        """Scan a_t = xu_t + W h_{t-1}, h_t = act(a_t) over xu (L, B, H) -> (h_L, hs (L, B, H))."""
        def step(h, xu_t):
            h = act(xu_t + h @ W.T)
            return h, h
        return lax.scan(step, h, xu)

    def windows_all(W, xu, h0, k):
        """h_t with gradient through its own window only, for every t: (T, B, H)."""
        T = xu.shape[0]
        _, hs = run(W, xu, h0)
        hs = lax.stop_gradient(jnp.concatenate([h0[None], hs]))            # (T + 1, B, H)
        starts = hs[jnp.maximum(jnp.arange(1, T + 1) - k - 1, 0)]         # h_{t-k-1}, (T, B, H)
        xu_pad = jnp.concatenate([jnp.zeros((k,) + xu.shape[1:]), xu])    # step j at j - 1 + k

        def offset(h, i):                           # window step j = t - k + i for all t at once
            xu_i = lax.dynamic_slice_in_dim(xu_pad, i, T)
            valid = (jnp.arange(T) >= k - i)[:, None, None]                # j >= 1
            return jnp.where(valid, act(xu_i + h @ W.T), h), None

        h_end, _ = lax.scan(offset, starts, jnp.arange(k + 1))
        return h_end

    def loss(params, xs, ys, h0):
        U, W, V, b, c = params
        T = xs.shape[1]
        xu = jnp.swapaxes(xs, 0, 1) @ U.T                                 # (T, B, H)
        if b is not None:
            xu = xu + b
        k = T if trunc is None else trunc.k
        if spec.output == "all":
            if k >= T - 1:
                _, hs_out = run(W, xu, h0)
            else:
                hs_out = windows_all(W, xu, h0, k)
            ys_tm = jnp.swapaxes(ys, 0, 1)
        else:
            cut = max(T - k - 1, 0)
            h = h0
            if cut > 0:
                h, _ = run(W, xu[:cut], h0)
                h = lax.stop_gradient(h)
            h, _ = run(W, xu[cut:], h)
            hs_out, ys_tm = h[None], ys[None]
        os = hs_out @ V.T
        if c is not None:
            os = os + c
        return loss_of(os, ys_tm)

    return jax.jit(jax.value_and_grad(loss))


def to_device(problem, h0):
    """The problem's arrays as jax arrays (converted once, outside the timed calls)."""
    jnp = _jax().numpy
    params = hg.Params(*(None if a is None else jnp.asarray(a) for a in problem.params))
    return params, jnp.asarray(problem.xs), jnp.asarray(problem.ys), jnp.asarray(h0)


def call_blocking(fn, args):
    """fn(*args) with the result materialised (JAX dispatches asynchronously)."""
    out = fn(*args)
    _jax().block_until_ready(out)
    return out


def make_gated_value_and_grad(spec: hg.Spec):
    """A jitted `f(params, xs, ys, h0) -> (loss, grads: GatedParams)` for the GRU (reset after,
    PyTorch's) or the LSTM, full BPTT: the input side of every gate for all steps in one product,
    the recurrence one `lax.scan`.

    params: `GatedParams` of jax arrays (W_ih (G H, D), W_hh (G H, H), b_ih, b_hh (G H,),
    V (O, H), c (O,)); xs (B, T, D); ys (B, O) | (B, T, O); h0 (B, H) (c_0 = 0 for the LSTM).
    """
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    if spec.truncation is not None or spec.cell not in ("gru", "lstm") or spec.gru_reset != "after":
        raise ValueError("the gated JAX benchmark model is full BPTT for the GRU (reset after) "
                         f"and the LSTM, got {spec!r}")
    loss_of = _loss_fn(spec)
    sig = jax.nn.sigmoid

    def gru_step(W_hh, b_hh):
        def step(h, p):                               # p: W_ih x_t + b_ih, (B, 3H)
            H = h.shape[-1]
            rec = h @ W_hh.T + b_hh
            r = sig(p[:, :H] + rec[:, :H])
            z = sig(p[:, H:2 * H] + rec[:, H:2 * H])
            n = jnp.tanh(p[:, 2 * H:] + r * rec[:, 2 * H:])
            h = (1 - z) * n + z * h
            return h, h
        return step

    def lstm_step(W_hh, b_hh):
        def step(carry, p):                           # p: W_ih x_t + b_ih, (B, 4H)
            h, c = carry
            H = h.shape[-1]
            a = p + h @ W_hh.T + b_hh
            i, f = sig(a[:, :H]), sig(a[:, H:2 * H])
            g, o = jnp.tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
        return step

    def loss(params, xs, ys, h0):
        W_ih, W_hh, b_ih, b_hh, V, c = params
        p = jnp.swapaxes(xs, 0, 1) @ W_ih.T                              # (T, B, G H)
        if b_ih is not None:
            p = p + b_ih
        bh = 0.0 if b_hh is None else b_hh
        if spec.cell == "gru":
            _, hs = lax.scan(gru_step(W_hh, bh), h0, p)
        else:
            _, hs = lax.scan(lstm_step(W_hh, bh), (h0, jnp.zeros_like(h0)), p)
        if spec.output == "all":
            hs_out, ys_tm = hs, jnp.swapaxes(ys, 0, 1)
        else:
            hs_out, ys_tm = hs[-1:], ys[None]
        os = hs_out @ V.T
        if c is not None:
            os = os + c
        return loss_of(os, ys_tm)

    return jax.jit(jax.value_and_grad(loss))


def gated_to_device(problem, h0):
    """A gated problem's arrays as jax arrays."""
    jnp = _jax().numpy
    params = GatedParams(*(None if a is None else jnp.asarray(a) for a in problem.params))
    return params, jnp.asarray(problem.xs), jnp.asarray(problem.ys), jnp.asarray(h0)
