"""Check a jit-compiled JAX loss written in flax's weight layout, at fixed sizes, in one call.

    python examples/jax_adapter.py

flax's SimpleCell keeps its kernels as (in, out): i.kernel (D, H) = U.T, h.kernel (H, H) = W.T,
one bias on the input Dense. `names` maps handgrad's U, W, V, b, c to paths in your parameter
dict (".T": your array is the transpose). The loss is plain JAX here; a flax model's `apply`
inside `loss_fn` works the same way.
"""
import jax
import jax.numpy as jnp

import handgrad as hg
from handgrad import adapters

jax.config.update("jax_enable_x64", True)      # float64; without it JAX computes in float32
B, T, D, H, O = 4, 12, 3, 8, 2
FLAX_NAMES = {"U": "cell/i/kernel.T", "W": "cell/h/kernel.T", "b": "cell/i/bias",
              "V": "head/kernel.T", "c": "head/bias"}


def loss_fn(params, xs, ys, h0):
    """params: {"cell": {"i": {"kernel", "bias"}, "h": {"kernel"}}, "head": {"kernel", "bias"}};
    xs (B, T, D), ys (B, T, O), h0 (B, H) -> 1/2 sum of squared errors."""
    cell, head = params["cell"], params["head"]

    def step(h, x):                                             # x (B, D), h (B, H)
        h = jnp.tanh(x @ cell["i"]["kernel"] + cell["i"]["bias"] + h @ cell["h"]["kernel"])
        return h, h
    _, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))     # (T, B, H)
    os = jnp.swapaxes(hs, 0, 1) @ head["kernel"] + head["bias"]   # (B, T, O)
    return 0.5 * jnp.sum((os - ys) ** 2)


def main(max_examples: int = 100):
    spec = hg.Spec(activation="tanh", bias=True, output="all", loss="half_squared")
    candidate = adapters.from_jax(loss_fn, FLAX_NAMES)           # jit-compiled once per size
    print(hg.check(candidate, spec, max_examples=max_examples, sizes=(B, T, D, H, O)))
    print(hg.identify(candidate, spec))


if __name__ == "__main__":
    main()
