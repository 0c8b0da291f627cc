"""A plain batched numpy RNN, with one classic BPTT mistake switched on at a time.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

`rnn(spec, mistake=None)` returns a candidate `(params, xs, ys, h0) -> (loss, grads)`. With
`mistake=None` it is correct (full BPTT, or `Window(k)` by one sweep per loss step); each entry of
MISTAKES changes one line of it, marked `# MISTAKE` below, into a mistake people really make.
"""
from __future__ import annotations

import numpy as np

from ..spec import Window
from ._common import act, act_grad_from_output, squared_loss, supported

MISTAKES = {
    "act_of_preactivation": "the activation's derivative is taken of the pre-activation a_t "
                            "(1 - a^2) instead of the output h_t (1 - h^2)",
    "dropped_carry": "the gradient carried back from step t + 1 is dropped: each step sees only "
                     "its own loss term",
    "dW_paired_with_h_t": "dW pairs dL/da_t with h_t instead of h_{t-1}",
    "W_not_transposed": "the carry to h_{t-1} multiplies by W instead of W^T",
    "window_off_by_one": "Window(k) implemented with k - 1 transitions (the loop stops a step "
                         "early)",
    "mean_vs_sum": "the loss is averaged (reduction='mean') but the gradient is not divided by "
                   "the count",
    "dh0_not_carried": "the returned dh0 is dL/dh_1, not carried through step 1 (W^T dL/da_1)",
    "biases_summed": "PyTorch style, two hidden biases b_ih + b_hh = b, and the returned db is "
                     "the sum of their gradients (each alone is db)",
    "mean_over_batch_only": "the loss and gradient are divided by the batch size B alone "
                            "(loss.sum() / B), not by the spec's count",
    "clipped_gradient": "the weight gradients are clipped to a global norm of 1e-3, as a "
                        "training loop does before its update",
    "ignores_h0": "the forward pass starts from zeros whatever h0 is given",
    "other_activation": "the activation and its derivative are the other one (sigmoid for tanh, "
                        "tanh for sigmoid): code copied from a tutorial with the other choice",
    "missing_half": "the loss is 1/2 ||o - y||^2 but its derivative is taken as 2 (o - y)",
}
CLIP_NORM = 1e-3          # "clipped_gradient": max global norm of the weight gradients


def rnn(spec, mistake=None):
    """A candidate for `spec` (squared losses; full BPTT or Window(k)) with `mistake` or none."""
    supported(spec, (type(None), Window))
    if mistake is not None and mistake not in MISTAKES:
        raise ValueError(f"mistake must be None or one of {sorted(MISTAKES)}, got {mistake!r}")
    on = mistake.__eq__ if mistake else (lambda name: False)
    activation = spec.activation
    if on("other_activation"):                                  # MISTAKE: the other one
        activation = {"tanh": "sigmoid", "sigmoid": "tanh"}[spec.activation]

    def candidate(params, xs, ys, h0):
        U, W, V, b, c = params
        B, T, _ = xs.shape
        H = W.shape[0]
        # forward: hs[t] = h_t for t = 0..T, time-major
        hs, pre = [np.zeros((B, H)) if h0 is None or on("ignores_h0") else h0], []   # MISTAKE if on
        for t in range(T):
            a = xs[:, t] @ U.T + hs[-1] @ W.T + (0 if b is None else b)
            pre.append(a)
            hs.append(act(activation, a))
        H_all = np.stack(hs[1:], axis=1)                       # (B, T, H) h_1..h_T
        used = H_all if spec.output == "all" else H_all[:, -1:]
        os = used @ V.T + (0 if c is None else c)              # (B, S, O)
        loss, dos = squared_loss(os, ys if spec.output == "all" else ys[:, None], spec)
        if on("mean_vs_sum"):
            dos = dos * (dos.size if spec.reduction == "mean" else 1)   # MISTAKE: not / count
        if on("mean_over_batch_only"):                          # MISTAKE: / B, not / count
            count = dos.size if spec.reduction == "mean" else 1
            loss, dos = loss * count / B, dos * count / B
        if on("missing_half") and spec.loss == "half_squared":
            dos = 2 * dos                                       # MISTAKE: d/do of ||o - y||^2
        dV = np.einsum("bso,bsh->oh", dos, used)               # sum_t do_t h_t^T
        dc = dos.sum(axis=(0, 1)) if c is not None else None
        dh_out = np.zeros((B, T, H))                           # dL/dh_t through o_t
        dh_out[:, -dos.shape[1]:] = dos @ V

        def dact(t):                                           # act'(a_t), t 1-based
            if on("act_of_preactivation"):
                return act_grad_from_output(activation, pre[t - 1])   # MISTAKE: of a_t
            return act_grad_from_output(activation, hs[t])

        dU, dW, db = np.zeros_like(U), np.zeros_like(W), np.zeros(H)
        dh0 = np.zeros((B, H))

        def step(t, dh):
            """Backprop dL/dh_t through step t; returns dL/dh_{t-1}."""
            nonlocal dU, dW, db
            da = dh * dact(t)                                  # h_t = act(a_t)
            dU += da.T @ xs[:, t - 1]                          # a_t = U x_t + ...
            dW += da.T @ (hs[t] if on("dW_paired_with_h_t") else hs[t - 1])   # MISTAKE if on
            db += da.sum(axis=0)
            return da @ (W.T if on("W_not_transposed") else W)   # MISTAKE if on: W, not W^T

        if spec.truncation is None:                            # one reverse sweep, carrying dh
            carry = np.zeros((B, H))
            for t in range(T, 0, -1):
                dh = dh_out[:, t - 1] + (0 if on("dropped_carry") else carry)  # MISTAKE if on
                carry = step(t, dh)
            dh0 = dh if on("dh0_not_carried") else carry       # MISTAKE if on: dL/dh_1
        else:                                                  # Window(k): a sweep per loss step
            k = spec.truncation.k - (1 if on("window_off_by_one") else 0)   # MISTAKE if on
            for t in range(1, T + 1):
                dh = dh_out[:, t - 1]
                for s in range(t, max(1, t - k) - 1, -1):
                    carry = step(s, dh)
                    if s == 1:
                        dh0 += dh if on("dh0_not_carried") else carry
                    dh = 0 * carry if on("dropped_carry") else carry
        grads = {"U": dU, "W": dW, "V": dV, "h0": dh0}
        if b is not None:
            db_ih, db_hh = db, db                              # b = b_ih + b_hh: each gets db
            grads.update(b=db_ih + db_hh if on("biases_summed") else db_ih, c=dc)   # MISTAKE if on
        if on("clipped_gradient"):                             # MISTAKE: clip_grad_norm_
            norm = np.sqrt(sum(np.sum(g * g) for n, g in grads.items() if n != "h0"))
            scale = min(1.0, CLIP_NORM / norm) if norm > 0 else 1.0
            grads = {n: g if n == "h0" else scale * g for n, g in grads.items()}
        return loss, grads

    candidate.__name__ = f"classic_rnn_{mistake or 'correct'}"
    return candidate
