"""The 2019 tutorial's published backward pass, re-implemented bug for bug: a KNOWN-WRONG fixture.

Nothing in handgrad trains with this. It exists so that `handgrad tutorial`, the tests and the
oracle's gallery can show, on the tutorial's own data, how far its gradient is from the exact one
(`handgrad.loss_and_grads`) and what each of its mistakes does. It is written in this project's
own code, following the published algorithm step by step (column vectors, one record at a time);
every line that departs from correct BPTT is marked ``# BUG n`` with the number of the list in
docs/training.md (`handgrad tutorial`) and in `BUGS` below.

Size letters: T time steps (the window length), D input features per step, H hidden units,
O outputs (1 in the tutorial).

Public interface (kept deliberately simple, so other code can wrap it as a gradient candidate):

    loss, grads = published_backward(U, W, V, x, y, bptt_truncate=5)

- `U` (H, D), `W` (H, H), `V` (O, H): the tutorial's weights (no biases).
- `x`: one record. Either the window itself, shape (T,): the tutorial's input, step t gets the
  one-hot position vector scaled by x[t], so D = T; or the per-step inputs, shape (T, D): step t
  gets the vector x[t] (the generalisation of the tutorial's `new_input`).
- `y`: the target, a scalar or shape (O,).
- `bptt_truncate`: the tutorial's truncation length (5).
- Returns `(loss, grads)`: loss = 1/2 ||V h_T - y||^2 (right), and `grads` a `handgrad.Params`
  `(dU, dW, dV, None, None)` holding the tutorial's published gradients (wrong).

The forward pass starts from h_0 = 0, as the tutorial does.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .nonlin import act
from .params import Params

BUGS = {
    1: "the sigmoid derivative is taken of the pre-activation, add * (1 - add), instead of the "
       "output s(1 - s), and always of the last step's pre-activation",
    2: "the 'gradients' of W and U hold no error term at all (W @ prev_s, U @ x_t): they do "
       "not depend on the target",
    3: "the inner truncation loop reads the state and input of the outer step t instead of its "
       "own step i, and its loop variable i shadows the record index",
    4: "the per-step accumulators dU_t, dW_t are never reset, so early contributions are "
       "counted again at every later step",
    5: "the output error is injected at every step as if the task were many-to-many: dV sums "
       "over all T hidden states",
    6: "the prediction code feeds the whole window (U @ x) at every step, not the input the "
       "model was trained on",
    7: "with uniform(0, 1) weights every hidden unit saturates, so the exact gradients of U and "
       "W vanish and the model can only learn a constant",
    8: "the reported RMSE is a lucky draw: other random seeds give far worse results",
}


class Record(NamedTuple):
    """One record in the tutorial's column-vector layout."""

    inputs: np.ndarray  # (T, D, 1) new_input of every step
    y: np.ndarray       # (O, 1) target


class Layer(NamedTuple):
    """What the tutorial's forward pass keeps per step (its `layers` list)."""

    s: np.ndarray       # (H, 1) hidden state at this step
    prev_s: np.ndarray  # (H, 1) hidden state of the step before


class Forward(NamedTuple):
    layers: list        # T Layer entries
    add: np.ndarray     # (H, 1) pre-activation of the LAST step (the variable left after the loop)
    mulv: np.ndarray    # (O, 1) output of the last step


def as_record(x, y, D: int, O: int) -> Record:
    """The tutorial's per-step inputs from a window (T,) or per-step features (T, D)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        if x.shape[0] != D:
            raise ValueError(f"x as a window must have shape (T,) with T = D = {D} (U is (H, {D})), "
                             f"got {x.shape}")
        steps = x[:, None] * np.eye(D)                # one-hot position input, scaled by the value
    elif x.ndim == 2 and x.shape[1] == D and x.shape[0] >= 1:
        steps = x
    else:
        raise ValueError(f"x must have shape (T,) or (T, D) with D = {D}, got {x.shape}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape != (O,):
        raise ValueError(f"y must be a scalar or have shape (O,) = ({O},), got {y.shape}")
    return Record(steps[:, :, None], y[:, None])


def _sigmoid(a):
    with np.errstate(over="ignore"):                          # exp(-a) -> inf gives exactly 0
        return act("sigmoid", a)


def published_forward(U, W, V, rec: Record) -> Forward:
    """The tutorial's forward pass (this part is right): h_t = sigmoid(U x_t + W h_{t-1})."""
    prev_s = np.zeros(W.shape[:-1] + (1,))             # h_0 = 0, (H, 1) (or (M, H, 1))
    layers = []
    add = mulv = None
    for new_input in rec.inputs:
        add = U @ new_input + W @ prev_s
        s = _sigmoid(add)
        mulv = V @ s
        layers.append(Layer(s, prev_s))
        prev_s = s
    return Forward(layers, add, mulv)


def _backward(U, W, V, rec: Record, fwd: Forward, bptt_truncate: int, fix=frozenset()):
    """The published backward pass. `fix` may name bugs 1, 3, 4 to repair one at a time (used only
    to measure each bug's own effect; repairing them all still does not give the right gradient,
    because bug 2 stays)."""
    T = len(fwd.layers)
    dU, dW, dV = np.zeros(U.shape), np.zeros(W.shape), np.zeros(V.shape)
    dU_t, dW_t = np.zeros(U.shape), np.zeros(W.shape)
    dmulv = fwd.mulv - rec.y                                 # derivative of the prediction (right)
    for t in range(T):
        if 4 in fix:
            dU_t, dW_t = np.zeros(U.shape), np.zeros(W.shape)
        dV_t = dmulv @ fwd.layers[t].s.T                     # BUG 5: error of step T paired with h_t
        dsv = V.T @ dmulv                                    # BUG 5: injected at every step
        dadd = _derivative(fwd, t, fix) * dsv                # BUG 1
        dprev_s = W.T @ dadd
        for i in range(t - 1, max(-1, t - bptt_truncate - 1), -1):   # BUG 3: i shadows the record index
            step = i if 3 in fix else t                      # BUG 3: reads step t, not step i
            ds = dsv + dprev_s                               # BUG 5: error injected again
            dadd = _derivative(fwd, i, fix) * ds             # BUG 1
            dW_i = W @ fwd.layers[step].prev_s               # BUG 2: no error term; (H, 1) broadcast
            dprev_s = W.T @ dadd                             #        into every column of dW_t
            dU_i = U @ rec.inputs[step]                      # BUG 2: no error term; (H, 1) broadcast
            dU_t += dU_i                                     # BUG 4: never reset
            dW_t += dW_i
        dV += dV_t                                           # BUG 5: sums over all T states
        dU += dU_t                                           # BUG 4: counts every earlier step again
        dW += dW_t
    return Params(dU, dW, dV, None, None)


def _derivative(fwd: Forward, step: int, fix):
    """The factor the published code uses for sigmoid'(a): add * (1 - add) of the LAST step."""
    if 1 in fix:
        s = fwd.layers[step].s
        return s * (1 - s)
    return fwd.add * (1 - fwd.add)                           # BUG 1


def _check_weights(U, W, V):
    """float64 copies of the weights, shapes (H, D), (H, H), (O, H) checked."""
    U, W, V = (np.asarray(a, dtype=np.float64) for a in (U, W, V))
    if U.ndim != 2 or W.shape != (U.shape[0], U.shape[0]) or V.ndim != 2 or V.shape[1] != U.shape[0]:
        raise ValueError("U, W, V must have shapes (H, D), (H, H), (O, H); got "
                         f"{U.shape}, {W.shape}, {V.shape}")
    return U, W, V


def published_backward(U, W, V, x, y, bptt_truncate: int = 5):
    """The tutorial's published loss and (wrong) gradients for one record.

    U (H, D), W (H, H), V (O, H); x (T,) window (one-hot position input, D = T) or (T, D) per-step
    inputs; y scalar or (O,). Returns (loss: float, grads: Params(dU, dW, dV, None, None)).
    """
    U, W, V = _check_weights(U, W, V)
    if isinstance(bptt_truncate, bool) or not isinstance(bptt_truncate, (int, np.integer)) \
            or bptt_truncate < 0:
        raise ValueError(f"bptt_truncate must be an integer >= 0, got {bptt_truncate!r}")
    rec = as_record(x, y, U.shape[1], V.shape[0])
    fwd = published_forward(U, W, V, rec)
    loss = 0.5 * float(np.sum((rec.y - fwd.mulv) ** 2))
    return loss, _backward(U, W, V, rec, fwd, int(bptt_truncate))


def published_backward_closed_form(U, W, V, x, y, bptt_truncate: int = 5):
    """The same numbers as `published_backward`, without its loops (for replicating whole
    trainings quickly). Reading the loops: every inner iteration at outer step t adds the same
    column U x_t (and W h_{t-1}) — bug 3; there are min(t, k) of them — and the never-reset
    accumulator adds step t's share again at each of the T - t outer steps from t on — bug 4.
    So, with 0-based t and c_t = (T - t) min(t, k):

        dU = (U sum_t c_t x_t) 1^T      dW = (W sum_t c_t h_{t-1}) 1^T      dV = (o_T - y) sum_t h_t^T

    Same arguments and return value as `published_backward`; equal to it up to round-off.
    """
    U, W, V = _check_weights(U, W, V)
    rec = as_record(x, y, U.shape[1], V.shape[0])
    return closed_form(U, W, V, rec, int(bptt_truncate))


def closed_form(U, W, V, rec: Record, k: int):
    """`published_backward_closed_form` on a prepared `Record`; the weights may carry leading
    axes (M, H, D), (M, H, H), (M, O, H) for M models trained side by side; then the loss is (M,)."""
    fwd = published_forward(U, W, V, rec)
    T = len(fwd.layers)
    t = np.arange(T)
    c = (T - t) * np.minimum(t, k)                                        # times step t is counted
    states = np.concatenate([layer.s for layer in fwd.layers], axis=-1)      # (..., H, T)
    prev = np.concatenate([layer.prev_s for layer in fwd.layers], axis=-1)   # (..., H, T)
    dmulv = fwd.mulv - rec.y                                                 # (..., O, 1)
    dU = (U @ (rec.inputs[:, :, 0].T @ c))[..., None] * np.ones(U.shape[-1])
    dW = (W @ (prev @ c)[..., None]) * np.ones(W.shape[-1])
    dV = dmulv @ np.swapaxes(states.sum(axis=-1, keepdims=True), -1, -2)
    loss = 0.5 * np.sum((rec.y - fwd.mulv) ** 2, axis=(-2, -1))
    return (float(loss) if np.ndim(loss) == 0 else loss), Params(dU, dW, dV, None, None)


def published_predict(U, W, V, x):
    """The tutorial's prediction code (BUG 6): the whole window `x` (T,) is fed at every step.

    Returns the output (O,) after T steps.
    """
    U, W, V = _check_weights(U, W, V)
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    prev_s = np.zeros((W.shape[0], 1))
    for _ in range(x.shape[0]):
        prev_s = _sigmoid(U @ x + W @ prev_s)                # BUG 6: U @ x, the whole window
    return (V @ prev_s)[:, 0]
