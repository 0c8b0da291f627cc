"""Candidates written the way Keras and haiku users write them: their own weight layouts, gate
orders, bias conventions and precision, differentiated by JAX, converted to and from handgrad's
names by hand as a user would. The oracle must pass the correct ones and name what is wrong with
each wrong one.

Layouts (../shared/docs/real-code.md and the libraries' docs):

- Keras `GRU`: `kernel` (D, 3H) and `recurrent_kernel` (H, 3H), gate blocks in the order
  (z, r, h) along the last axis (PyTorch's, handgrad's: (r, z, n) along the first);
  `reset_after=True` (the default) has `bias` (2, 3H), input and recurrent rows, and applies the
  reset gate after the recurrent product; `reset_after=False` has one `bias` (3H,) and applies it
  before. Keras's mean squared error is the mean over every element: `Spec(loss="squared",
  reduction="mean")`.
- Keras `SimpleRNN`: `kernel` (D, H) = U.T, `recurrent_kernel` (H, H) = W.T, one `bias`; on the
  JAX backend a float64 layer still computes in float32.
- haiku `VanillaRNN`: relu, an input `Linear` and a hidden `Linear`, each with its own bias (they
  enter as a sum).

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.
"""
import numpy as np
import pytest
from hypothesis import settings

import handgrad as hg
from handgrad.oracle import CandidateError, GradientMismatch, check
from conftest import need

SIZES = (2, 5, 3, 4, 2)          # B, T, D, H, O: fixed, so each jitted loss compiles once


def searched(n: int) -> int:
    """`n` cases under the dev and ci profiles, a quarter of the profile's count under
    `thorough`: correct candidates must pass the harder search too."""
    return max(n, settings().max_examples // 4)


@pytest.fixture(scope="module")
def jax():
    jax = need("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _jitted_value_and_grad(jax, loss_fn):
    """loss_fn(weights, xs, ys, h0) -> value, (d weights, d h0), compiled once per shape."""
    return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 3)))


# ------------------------------------------------------------------ Keras GRU

KERAS_ORDER = (1, 0, 2)          # Keras block k is handgrad's block KERAS_ORDER[k]: z, r, h


def _to_keras_blocks(a, H):
    """(3H, ...) in handgrad's order (r, z, n) -> (..., 3H) in Keras's order (z, r, h)."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in KERAS_ORDER], axis=0).T


def _from_keras_blocks(a, H):
    """Inverse of `_to_keras_blocks`."""
    a = np.asarray(a).T
    blocks = [None] * 3
    for k, g in enumerate(KERAS_ORDER):
        blocks[g] = a[k * H:(k + 1) * H]
    return np.concatenate(blocks, axis=0)


def keras_gru(jax, reset_after=True, reorder_gradients=True):
    """A candidate for `Spec(cell="gru", gru_reset="after" if reset_after else "before",
    loss="squared", reduction="mean")` in Keras's layout, differentiated by JAX.

    `reorder_gradients=False` is a classic adapter bug: the weights are converted to Keras's
    gate order, the gradients are handed back in it (z and r blocks swapped)."""
    jnp = jax.numpy
    sig = jax.nn.sigmoid

    def loss_fn(w, xs, ys, h0):
        H = w["recurrent_kernel"].shape[0]
        if reset_after:
            b_in, b_rec = w["bias"][0], w["bias"][1]
        else:
            b_in, b_rec = w["bias"], jnp.zeros_like(w["bias"])

        def step(h, x):
            xk = x @ w["kernel"] + b_in                          # (B, 3H): z, r, h
            if reset_after:
                hk = h @ w["recurrent_kernel"] + b_rec
                z = sig(xk[:, :H] + hk[:, :H])
                r = sig(xk[:, H:2 * H] + hk[:, H:2 * H])
                cand = jnp.tanh(xk[:, 2 * H:] + r * hk[:, 2 * H:])
            else:
                hk = h @ w["recurrent_kernel"][:, :2 * H]
                z = sig(xk[:, :H] + hk[:, :H])
                r = sig(xk[:, H:2 * H] + hk[:, H:])
                cand = jnp.tanh(xk[:, 2 * H:] + (r * h) @ w["recurrent_kernel"][:, 2 * H:])
            h = z * h + (1 - z) * cand
            return h, h

        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        out = jnp.swapaxes(hs, 0, 1) @ w["dense_kernel"] + w["dense_bias"]    # (B, T, O)
        return jnp.mean((out - ys) ** 2)

    grad = _jitted_value_and_grad(jax, loss_fn)

    def candidate(params, xs, ys, h0):
        H = params.W_hh.shape[1]
        w = {"kernel": _to_keras_blocks(params.W_ih, H),
             "recurrent_kernel": _to_keras_blocks(params.W_hh, H),
             "bias": (np.stack([_to_keras_blocks(params.b_ih, H), _to_keras_blocks(params.b_hh, H)])
                      if reset_after else _to_keras_blocks(params.b_ih + params.b_hh, H)),
             "dense_kernel": params.V.T, "dense_bias": params.c}
        start = np.zeros((xs.shape[0], H)) if h0 is None else h0
        loss, (g, dh0) = grad(w, xs, ys, start)
        back = (lambda a: _from_keras_blocks(a, H)) if reorder_gradients else (lambda a: np.asarray(a).T)
        if reset_after:
            db_ih, db_hh = back(g["bias"][0]), back(g["bias"][1])
        else:
            db_ih = db_hh = back(g["bias"])                      # one bias: both are its gradient
        return float(loss), {"W_ih": back(g["kernel"]), "W_hh": back(g["recurrent_kernel"]),
                             "b_ih": db_ih, "b_hh": db_hh, "V": np.asarray(g["dense_kernel"]).T,
                             "c": np.asarray(g["dense_bias"]), "h0": np.asarray(dh0)}
    return candidate


def keras_spec(reset_after: bool) -> hg.Spec:
    return hg.Spec(cell="gru", gru_reset="after" if reset_after else "before", loss="squared",
                   reduction="mean")


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_keras_gru_passes_with_its_reset_convention(jax, reset_after):
    report = check(keras_gru(jax, reset_after), keras_spec(reset_after),
                   max_examples=searched(25), sizes=SIZES, save_dir=None)
    assert report.examples == searched(25) and report.dtypes == ("float64",)


def test_keras_gru_checked_with_the_other_reset_convention_is_named(jax):
    """Keras's `reset_after=False` checked against PyTorch's convention (reset after)."""
    with pytest.raises(GradientMismatch) as info:
        check(keras_gru(jax, reset_after=False), keras_spec(reset_after=True), sizes=SIZES,
              save_dir=None)
    labels = [a.label for a in info.value.diagnosis.matches]
    assert labels == ["gru_reset='before'"], str(info.value)


def test_keras_gru_gradients_left_in_keras_gate_order_blame_the_r_and_z_blocks(jax):
    with pytest.raises(GradientMismatch) as info:
        check(keras_gru(jax, reorder_gradients=False), keras_spec(True), sizes=SIZES,
              save_dir=None)
    e = info.value
    assert e.param in ("W_ih", "W_hh", "b_ih", "b_hh"), str(e)
    gate_line = next(line for line in str(e).splitlines() if line.strip().startswith("gate:"))
    assert f"d{e.param}: r and z blocks wrong" in gate_line, str(e)
    assert "in the gate order (z, r, n), not handgrad's (r, z, n)" in gate_line, str(e)


# ------------------------------------------------------------------ Keras SimpleRNN, float32

def keras_simple_rnn(jax, returned=np.float64):
    """Keras `SimpleRNN` + `Dense` on the JAX backend: the layer's float64 weights are used in
    float32 (Keras 3 computes float64 layers in float32 on this backend); the gradients are
    returned as `returned`."""
    jnp = jax.numpy

    def loss_fn(w, xs, ys, h0):
        w = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), w)
        xs, ys, h0 = (a.astype(jnp.float32) for a in (xs, ys, h0))

        def step(h, x):
            h = jnp.tanh(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"])
            return h, h
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        out = jnp.swapaxes(hs, 0, 1) @ w["dense_kernel"] + w["dense_bias"]
        return 0.5 * jnp.sum((out - ys) ** 2)

    grad = _jitted_value_and_grad(jax, loss_fn)

    def candidate(params, xs, ys, h0):
        w = {"kernel": params.U.T, "recurrent_kernel": params.W.T, "bias": params.b,
             "dense_kernel": params.V.T, "dense_bias": params.c}
        start = np.zeros((xs.shape[0], params.W.shape[0])) if h0 is None else h0
        loss, (g, dh0) = grad(w, xs, ys, start)
        out = {"U": g["kernel"].T, "W": g["recurrent_kernel"].T, "b": g["bias"],
               "V": g["dense_kernel"].T, "c": g["dense_bias"], "h0": dh0}
        return (np.asarray(loss, returned),
                {name: np.asarray(a, returned) for name, a in out.items()})
    return candidate


def test_keras_float32_computation_returned_as_float64_is_named_precision(jax):
    with pytest.raises(GradientMismatch) as info:
        check(keras_simple_rnn(jax, returned=np.float64), hg.Spec(), sizes=SIZES, save_dir=None)
    assert "float32 round-off" in str(info.value), str(info.value)


def test_keras_float32_computation_returned_as_float32_passes(jax):
    report = check(keras_simple_rnn(jax, returned=np.float32), hg.Spec(),
                   max_examples=searched(25), sizes=SIZES, save_dir=None)
    assert report.dtypes == ("float32",)


# ------------------------------------------------------------------ haiku VanillaRNN

def haiku_vanilla_rnn(jax, biases_added=False):
    """haiku's `VanillaRNN` (relu; an input and a hidden `Linear`, two biases) and a `Linear`
    head, with haiku's (in, out) weights. The contract's one bias b is loaded into the input
    Linear (the hidden bias is 0) and db is the input bias's gradient, which equals the hidden
    bias's; `biases_added=True` returns their sum, a classic mistake (2x)."""
    jnp = jax.numpy

    def loss_fn(w, xs, ys, h0):
        def step(h, x):
            h = jax.nn.relu(x @ w["input/w"] + w["input/b"] + h @ w["hidden/w"] + w["hidden/b"])
            return h, h
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        out = jnp.swapaxes(hs, 0, 1) @ w["head/w"] + w["head/b"]
        return 0.5 * jnp.sum((out - ys) ** 2)

    grad = _jitted_value_and_grad(jax, loss_fn)

    def candidate(params, xs, ys, h0):
        w = {"input/w": params.U.T, "input/b": params.b, "hidden/w": params.W.T,
             "hidden/b": np.zeros_like(params.b), "head/w": params.V.T, "head/b": params.c}
        start = np.zeros((xs.shape[0], params.W.shape[0])) if h0 is None else h0
        loss, (g, dh0) = grad(w, xs, ys, start)
        db = g["input/b"] + g["hidden/b"] if biases_added else g["input/b"]
        return float(loss), {"U": np.asarray(g["input/w"]).T, "W": np.asarray(g["hidden/w"]).T,
                             "b": np.asarray(db), "V": np.asarray(g["head/w"]).T,
                             "c": np.asarray(g["head/b"]), "h0": np.asarray(dh0)}
    return candidate


RELU = hg.Spec(activation="relu")


def test_haiku_vanilla_rnn_passes_as_relu(jax):
    report = check(haiku_vanilla_rnn(jax), RELU, max_examples=searched(25), sizes=SIZES,
                   save_dir=None)
    assert report.examples == searched(25)


def test_haiku_vanilla_rnn_checked_as_tanh_is_named_relu(jax):
    with pytest.raises(GradientMismatch) as info:
        check(haiku_vanilla_rnn(jax), hg.Spec(), sizes=SIZES, save_dir=None)
    assert [a.label for a in info.value.diagnosis.matches] == ["activation='relu'"], \
        str(info.value)


def test_haiku_biases_added_is_named(jax):
    with pytest.raises(GradientMismatch) as info:
        check(haiku_vanilla_rnn(jax, biases_added=True), RELU, sizes=SIZES, save_dir=None)
    e = info.value
    assert e.param == "b" and e.diagnosis.factors == pytest.approx({"b": 2.0}), str(e)
    assert "bias_ih and bias_hh were added" in str(e), str(e)


# ------------------------------------------------------------------ gate order, unit level

def test_block_order_names_a_permutation_of_the_gate_blocks():
    from handgrad.oracle.gates import block_order, gate_text
    rng = np.random.default_rng(0)
    H, D = 3, 2
    lstm = hg.Spec(cell="lstm")
    expected = rng.normal(size=(4 * H, D))                         # blocks i, f, g, o
    i, f, g, o = (expected[k * H:(k + 1) * H] for k in range(4))
    tf_order = np.concatenate([i, g, f, o])                        # TensorFlow's i, j, f, o
    assert block_order(lstm, "W_ih", tf_order, expected, 1e-12) == ("i", "g", "f", "o")
    assert block_order(lstm, "W_ih", expected, expected, 1e-12) is None        # no permutation
    one_wrong = expected.copy()
    one_wrong[:H] *= 2
    assert block_order(lstm, "W_ih", one_wrong, expected, 1e-12) is None      # not an order
    text = gate_text(lstm, {"W_ih": tf_order}, {"W_ih": expected}, ("W_ih",), {"W_ih": 1e-12})
    assert "f and g blocks wrong" in text
    assert "gate order (i, g, f, o), not handgrad's (i, f, g, o)" in text
    assert "TensorFlow's LSTMCell is i, j, f, o" in text
    text = gate_text(lstm, {"W_ih": one_wrong}, {"W_ih": expected}, ("W_ih",), {"W_ih": 1e-12})
    assert "i block wrong" in text and "gate order" not in text


# ------------------------------------------------------------------ d2l RNNScratch language model

def d2l_rnn_lm(jax, clip=None):
    """Dive into Deep Learning's `RNNScratch` with its language-model head (`W_xh` (D, H),
    `W_hh` (H, H), `b_h`; `W_hq` (H, O), `b_q`), cross-entropy averaged over every (batch, step)
    pair, as its training loop computes it. `clip=theta` rescales the gradient to global norm
    theta when it is larger, as d2l's `grad_clipping` does before each update: a gradient that
    was clipped is not the loss's gradient."""
    jnp = jax.numpy

    def loss_fn(w, xs, ys, h0):
        def step(h, x):
            h = jnp.tanh(x @ w["W_xh"] + h @ w["W_hh"] + w["b_h"])
            return h, h
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        logits = jnp.swapaxes(hs, 0, 1) @ w["W_hq"] + w["b_q"]             # (B, T, O)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, ys[..., None], axis=-1))

    grad = _jitted_value_and_grad(jax, loss_fn)

    def candidate(params, xs, ys, h0):
        w = {"W_xh": params.U.T, "W_hh": params.W.T, "b_h": params.b, "W_hq": params.V.T,
             "b_q": params.c}
        start = np.zeros((xs.shape[0], params.W.shape[0])) if h0 is None else h0
        loss, (g, dh0) = grad(w, xs, np.asarray(ys), start)
        g = {k: np.asarray(v) for k, v in g.items()}
        if clip is not None:
            norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
            if norm > clip:
                g = {k: v * (clip / norm) for k, v in g.items()}
        return float(loss), {"U": g["W_xh"].T, "W": g["W_hh"].T, "b": g["b_h"],
                             "V": g["W_hq"].T, "c": g["b_q"], "h0": np.asarray(dh0)}
    return candidate


LM = hg.Spec(loss="cross_entropy", reduction="mean", output="all")


def test_d2l_language_model_passes(jax):
    report = check(d2l_rnn_lm(jax), LM, max_examples=searched(25), sizes=SIZES, save_dir=None)
    assert report.examples == searched(25)


def test_d2l_clipped_gradient_is_named_clipping(jax):
    with pytest.raises(GradientMismatch) as info:
        check(d2l_rnn_lm(jax, clip=1.0), LM, sizes=SIZES, save_dir=None)
    e = info.value
    assert "gradient clipping" in str(e), str(e)


# ------------------------------------------------------------------ a hand-written PyTorch module

@pytest.fixture(scope="module")
def torch():
    torch = need("torch")
    torch.set_num_threads(1)      # tiny problems: threads only add overhead
    return torch


def concat_cell_classifier(torch, zero_grad=True):
    """A PyTorch module as the classic character-level classifier tutorials write it: one
    `nn.Linear(D + H, H)` on the concatenation [x_t, h_{t-1}] (so U and W are the two column
    blocks of its weight, one bias), tanh, a `nn.Linear(H, O)` on the last state and
    `nn.CrossEntropyLoss()` (mean over the batch): `Spec(output="last", loss="cross_entropy",
    reduction="mean")`. The module is built once and its weights loaded for each call, as a
    training loop reuses its model; `zero_grad=False` forgets to clear the gradients between
    calls, the classic PyTorch mistake: `.grad` accumulates over calls."""
    B, T, D, H, O = SIZES

    class ConcatRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.i2h = torch.nn.Linear(D + H, H).double()
            self.h2o = torch.nn.Linear(H, O).double()

        def forward(self, xs, h):
            for t in range(xs.shape[1]):
                h = torch.tanh(self.i2h(torch.cat([xs[:, t], h], dim=1)))
            return self.h2o(h)

    model = ConcatRNN()

    def candidate(params, xs, ys, h0):
        with torch.no_grad():
            model.i2h.weight.copy_(torch.from_numpy(np.concatenate([params.U, params.W], 1)))
            model.i2h.bias.copy_(torch.from_numpy(params.b))
            model.h2o.weight.copy_(torch.from_numpy(params.V))
            model.h2o.bias.copy_(torch.from_numpy(params.c))
        if zero_grad:
            model.zero_grad()
        h = torch.zeros(B, H, dtype=torch.float64) if h0 is None else torch.tensor(h0)
        h.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xs), h),
                                                 torch.from_numpy(np.asarray(ys)))
        loss.backward()
        weight = model.i2h.weight.grad.numpy()
        return loss.item(), {"U": weight[:, :D].copy(), "W": weight[:, D:].copy(),
                             "b": model.i2h.bias.grad.numpy().copy(),
                             "V": model.h2o.weight.grad.numpy().copy(),
                             "c": model.h2o.bias.grad.numpy().copy(), "h0": h.grad.numpy()}
    return candidate


CLASSIFIER = hg.Spec(output="last", loss="cross_entropy", reduction="mean")


def test_torch_concatenated_linear_classifier_passes(torch):
    report = check(concat_cell_classifier(torch), CLASSIFIER, max_examples=searched(25),
                   sizes=SIZES, save_dir=None)
    assert report.examples == searched(25)


def test_torch_gradients_not_zeroed_between_calls_are_named(torch):
    """Two calls on the same case differ (nondeterministic), and by exactly the expected
    gradient: the report says the gradients accumulate and what to call."""
    with pytest.raises(CandidateError) as info:
        check(concat_cell_classifier(torch, zero_grad=False), CLASSIFIER, sizes=SIZES,
              save_dir=None)
    e = info.value
    assert e.kind == "nondeterministic", str(e)
    assert "accumulate" in str(e) and "zero_grad()" in str(e), str(e)
