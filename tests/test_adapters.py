"""handgrad.adapters: a PyTorch module or a JAX loss function becomes a candidate in one call,
with parameters mapped by name (PyTorch's two biases, flax's transposed kernels); the runnable
examples of docs/oracle.md."""
import runpy
from pathlib import Path

import pytest
from hypothesis import settings

import handgrad as hg
from handgrad import adapters
from handgrad.oracle import GradientMismatch, check, identify
from conftest import need

ROOT = Path(__file__).resolve().parents[1]
SIZES = (3, 7, 2, 4, 2)          # B, T, D, H, O


def searched(n: int) -> int:
    """`n` cases under the dev and ci profiles, a quarter of the profile's count under
    `thorough` (500): correct candidates must pass the harder search too."""
    return max(n, settings().max_examples // 4)


# ----------------------------------------------------------------- PyTorch

@pytest.fixture(scope="module")
def torch():
    torch = need("torch")
    torch.manual_seed(0)
    torch.set_num_threads(1)      # tiny problems: threads only add overhead (much, when busy)
    return torch


def _modules(torch, cell=False, batch_first=True, nonlinearity="tanh", bias=True):
    B, T, D, H, O = SIZES
    rnn = (torch.nn.RNNCell(D, H, bias=bias, nonlinearity=nonlinearity) if cell else
           torch.nn.RNN(D, H, bias=bias, nonlinearity=nonlinearity, batch_first=batch_first))
    return rnn.double(), torch.nn.Linear(H, O, bias=bias).double()


@pytest.mark.parametrize("cell, batch_first", [(False, True), (False, False), (True, True)],
                         ids=["RNN", "RNN-time-first", "RNNCell"])
def test_torch_module_passes_at_its_sizes_and_any(torch, cell, batch_first):
    spec = hg.Spec(reduction="mean")
    rnn, head = _modules(torch, cell, batch_first)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    candidate = adapters.from_torch(rnn, spec, head)
    n = searched(20)
    assert check(candidate, spec, max_examples=n, sizes=SIZES, save_dir=None).examples == n
    assert check(candidate, spec, max_examples=n, save_dir=None).examples == n
    for k, v in rnn.state_dict().items():                 # the user's module is untouched
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("cell", [False, True], ids=["RNN", "RNNCell"])
def test_torch_detach_every_k_is_chunks_k(torch, cell):
    spec = hg.Spec(truncation=hg.Chunks(3), loss="squared", bias=False)
    rnn, head = _modules(torch, cell, bias=False)
    candidate = adapters.from_torch(rnn, spec, head, detach_every=3)
    assert identify(candidate, spec, save_dir=None).truncation == hg.Chunks(3)
    check(candidate, spec, max_examples=searched(20), max_T=10, save_dir=None)


def test_torch_cross_entropy_many_to_one(torch):
    spec = hg.Spec(output="last", loss="cross_entropy", reduction="mean")
    rnn, head = _modules(torch)
    check(adapters.from_torch(rnn, spec, head), spec, max_examples=searched(20), sizes=SIZES,
          save_dir=None)


def test_torch_mean_checked_against_sum_is_named(torch):
    rnn, head = _modules(torch)
    with pytest.raises(GradientMismatch) as info:
        check(adapters.from_torch(rnn, hg.Spec(), head), hg.Spec(reduction="mean"),
              save_dir=None)
    assert [a.label for a in info.value.diagnosis.matches] == ["reduction='sum'"]
    assert "mean vs sum" in str(info.value)


def test_torch_biases_summed_would_be_named(torch):
    """The adapter returns bias_ih's gradient; the sum of the two biases' gradients is 2 db,
    and the oracle says so."""
    spec = hg.Spec()
    rnn, head = _modules(torch)
    right = adapters.from_torch(rnn, spec, head)

    def summed(params, xs, ys, h0):
        loss, grads = right(params, xs, ys, h0)
        return loss, {**grads, "b": 2 * grads["b"]}          # bias_ih.grad + bias_hh.grad
    with pytest.raises(GradientMismatch) as info:
        check(summed, spec, save_dir=None)
    assert info.value.diagnosis.factors == pytest.approx({"b": 2.0})
    assert "bias_ih and bias_hh were added" in str(info.value)


def test_torch_float32_module_is_judged_as_float32(torch):
    spec = hg.Spec()
    rnn, head = _modules(torch)
    report = check(adapters.from_torch(rnn.float(), spec, head.float()), spec, max_examples=10,
                   save_dir=None)
    assert report.dtypes == ("float32",)


def test_torch_arguments(torch):
    rnn, head = _modules(torch)
    relu, _ = _modules(torch, nonlinearity="relu")
    two = torch.nn.RNN(2, 4, num_layers=2)
    for call, words in [
        (lambda: adapters.from_torch(rnn, hg.Spec(activation="sigmoid"), head),
         "spec.activation is 'sigmoid' but the module's nonlinearity is 'tanh'"),
        (lambda: adapters.from_torch(relu, hg.Spec(), head), "nonlinearity is 'relu'"),
        (lambda: adapters.from_torch(rnn, hg.Spec(bias=False), head), "spec.bias is False"),
        (lambda: adapters.from_torch(rnn, hg.Spec(), None), "head must be a torch.nn.Linear"),
        (lambda: adapters.from_torch(two, hg.Spec(), head), "one layer"),
        (lambda: adapters.from_torch(head, hg.Spec(), head), "rnn must be a torch.nn.RNN"),
        (lambda: adapters.from_torch(rnn, "tanh", head), "spec must be a handgrad.Spec"),
        (lambda: adapters.from_torch(rnn, hg.Spec(), head, detach_every=0), "detach_every"),
        (lambda: adapters.from_torch(rnn, hg.Spec(), torch.nn.Linear(5, 2)),
         "head must be nn.Linear(4, O, bias=True)"),
    ]:
        with pytest.raises(ValueError) as info:
            call()
        assert words in str(info.value)


# ----------------------------------------------------------------- JAX

@pytest.fixture(scope="module")
def jax():
    jax = need("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


FLAX_NAMES = {"U": "cell/i/kernel.T", "W": "cell/h/kernel.T", "b": "cell/i/bias",
              "V": "head/kernel.T", "c": "head/bias"}


def flax_style(jax, traces, activation="tanh", reduction="sum"):
    """A loss in flax SimpleCell's layout (kernels (in, out)), written with plain JAX; counts
    its traces (one per compilation)."""
    jnp = jax.numpy
    act = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[activation]

    def loss_fn(params, xs, ys, h0):
        traces.append(xs.shape)
        cell, head = params["cell"], params["head"]

        def step(h, x):
            h = act(x @ cell["i"]["kernel"] + cell["i"]["bias"] + h @ cell["h"]["kernel"])
            return h, h
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        os = jnp.swapaxes(hs, 0, 1) @ head["kernel"] + head["bias"]
        total = 0.5 * jnp.sum((os - ys) ** 2)
        return total / os.size if reduction == "mean" else total
    return loss_fn


def test_jax_flax_layout_compiles_once_at_fixed_sizes(jax):
    spec = hg.Spec()
    traces = []
    candidate = adapters.from_jax(flax_style(jax, traces), FLAX_NAMES)
    report = check(candidate, spec, max_examples=searched(40), sizes=SIZES, save_dir=None)
    assert report.examples == searched(40) and report.dtypes == ("float64",)
    assert traces == [(SIZES[0], SIZES[1], SIZES[2])]        # traced, so compiled, once


def test_jax_params_tuple(jax):
    jnp = jax.numpy

    def loss_fn(params, xs, ys, h0):                          # hg.Params of jax arrays
        U, W, V, b, c = params

        def step(h, x):
            h = jnp.tanh(x @ U.T + h @ W.T + b)
            return h, h
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
        return 0.5 * jnp.sum((jnp.swapaxes(hs, 0, 1) @ V.T + c - ys) ** 2)
    check(adapters.from_jax(loss_fn), hg.Spec(), max_examples=searched(10), sizes=SIZES,
          save_dir=None)


def test_jax_flax_layout_with_the_wrong_activation_is_named(jax):
    candidate = adapters.from_jax(flax_style(jax, [], activation="sigmoid"), FLAX_NAMES)
    with pytest.raises(GradientMismatch) as info:
        check(candidate, hg.Spec(), sizes=SIZES, save_dir=None)
    assert [a.label for a in info.value.diagnosis.matches] == ["activation='sigmoid'"]


def test_jax_names_mapping_errors(jax):
    def loss_fn(params, xs, ys, h0):
        return 0.0
    for names, words in [
        ([("U", "a")], "names must be a dict"),
        ({"U": "a", "X": "b", "W": "c"}, "unknown ['X']"),
        ({"U": "a"}, "missing ['W']"),
        ({"U": "a", "W": ".T"}, "names['W'] must be a path"),
        ({"U": "a", "W": 3}, "names['W'] must be a path"),
    ]:
        with pytest.raises(ValueError) as info:
            adapters.from_jax(loss_fn, names)
        assert words in str(info.value)
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        adapters.from_jax(None)


# ----------------------------------------------------------------- the documented examples

@pytest.mark.parametrize("example, module", [("torch_adapter.py", "torch"),
                                             ("jax_adapter.py", "jax")])
def test_documented_examples_run(example, module, capsys):
    need(module)
    runpy.run_path(str(ROOT / "examples" / example))["main"](max_examples=10)
    out = capsys.readouterr().out
    assert out.count("passed: 10 case(s)") >= 1 and "matches" in out
