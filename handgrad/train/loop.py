"""The training loop: minibatch SGD (or Adam) on windows, with the exact gradient from
`handgrad.loss_and_grads`, clipping, per-epoch evaluation and divergence handling.

Size letters: B windows, T steps, D input features, H hidden units, O outputs.

Losses are reported per window (the summed 1/2 squared error divided by the number of windows),
so that they compare across data sizes; RMSE is reported in the data's own units (predictions
and targets multiplied back by the stored scale, the tutorial's `max_val`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from .._threads import blas_threads
from ..bptt import loss_and_grads_trusted, predict
from ..params import INITS, Params, init_params, tree_map
from ..spec import ACTIVATIONS, CELLS, Spec, Truncation, Window, truncation_to_dict
from .data import Dataset, Windows
from .diagnose import Saturation, saturation
from .optim import Clip, clip, make_optimizer


@dataclass(frozen=True)
class TrainConfig:
    """What `handgrad train` varies; the defaults are the tutorial's task, corrected."""

    hidden: int = 100                      # H: the tutorial's 100 hidden units
    activation: Optional[str] = None       # None: the cell's own (sigmoid, the tutorial's, for
                                           # the Elman cell; gated cells have fixed gates)
    cell: str = "elman"                    # "elman" | "gru" | "lstm"
    bias: bool = False                     # the tutorial's model has no biases
    truncation: Truncation = Window(5)     # the tutorial's bptt_truncate = 5
    init: str = "normal"                   # LeCun normal; the tutorial's uniform(0, 1) saturates
    init_scale: float = 1.0
    lr: float = 0.05                       # learns in seconds; the tutorial's 1e-4 barely moves
    epochs: int = 20                       # val RMSE ~0.005 after 20 epochs on the sine task
    batch_size: int = 1                    # one window at a time, as the tutorial
    optimizer: str = "sgd"                 # "sgd" | "adam"
    clip: Clip = field(default_factory=Clip)   # each gradient element to [-10, 10], as the tutorial
    seed: int = 0                          # weights and (with shuffle) the window order
    shuffle: bool = False                  # the tutorial visits the windows in order

    def __post_init__(self):
        for name, lowest in (("hidden", 1), ("epochs", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        own = "sigmoid" if self.cell == "elman" else "tanh"
        if self.activation is None:
            object.__setattr__(self, "activation", own)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.cell != "elman" and self.activation != own:
            raise ValueError(f"activation applies to the Elman cell only; cell={self.cell!r} "
                             f"has fixed gates, got activation {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ValueError(f"init scale must be a positive finite number, got {self.init_scale!r}")
        make_optimizer(self.optimizer, self.lr)          # validates optimizer and lr

    def spec(self) -> Spec:
        return Spec(activation=self.activation, bias=self.bias, output="last",
                    loss="half_squared", reduction="sum", truncation=self.truncation,
                    cell=self.cell)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["truncation"] = truncation_to_dict(self.truncation)
        d["clip"] = {"kind": self.clip.kind, "limit": None if math.isinf(self.clip.limit)
                     else self.clip.limit}
        return d


class Evaluation(NamedTuple):
    loss: float          # 1/2 squared error per window (scaled units)
    rmse: float          # root mean squared error in data units
    preds: np.ndarray    # (B, O) predictions in data units
    truth: np.ndarray    # (B, O) targets in data units


class EpochStats(NamedTuple):
    epoch: int
    train_loss: float
    val_loss: float


class Divergence(NamedTuple):
    epoch: int
    step: int            # update number within the epoch, 1-based
    reason: str


class TrainResult(NamedTuple):
    params: Params                     # at the end of the last epoch with finite losses
    spec: Spec
    history: list                      # EpochStats, epoch 0 = initialisation
    train: Evaluation
    val: Evaluation
    seconds: float
    updates: int                       # updates made (including any after the last good epoch)
    epochs_done: int                   # epochs completed with finite losses
    diverged: Optional[Divergence]
    saturation_init: Saturation
    saturation_final: Saturation
    first_grad_max: dict               # max |gradient| per parameter on the first update


def evaluate(params: Params, spec: Spec, windows: Windows, data: Dataset) -> Evaluation:
    """Loss per window and RMSE in data units of `params` on `windows`."""
    with np.errstate(over="ignore", invalid="ignore"):   # a diverged model: inf, reported
        os_, _ = predict(params, windows.xs, spec)
        err = os_ - windows.ys
        loss = 0.5 * float(np.sum(err * err)) / len(err)
        cols = data.target_cols
        preds = data.scaler.inverse(os_, cols)
        truth = data.scaler.inverse(windows.ys, cols)
        rmse = float(np.sqrt(np.mean((preds - truth) ** 2)))
    return Evaluation(loss, rmse, preds, truth)


def _finite(params: Params) -> bool:
    return all(math.isfinite(float(np.sum(a))) for a in params if a is not None)


def train(data: Dataset, config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train a many-to-one RNN on `data` as `config` says. Deterministic for a given seed."""
    with blas_threads(config.batch_size * config.hidden ** 2):
        return _train(data, config, progress)


def _train(data: Dataset, config: TrainConfig, progress: bool) -> TrainResult:
    start = time.perf_counter()
    spec = config.spec()
    xs, ys = data.train.xs, data.train.ys
    n, D, O = xs.shape[0], xs.shape[2], ys.shape[1]
    params = init_params(spec, D, config.hidden, O, seed=config.seed, init=config.init,
                         scale=config.init_scale)
    opt = make_optimizer(config.optimizer, config.lr)
    state = opt.init(params)
    rng = np.random.default_rng(config.seed)
    sat_init = saturation(params, xs, spec)
    history = [EpochStats(0, evaluate(params, spec, data.train, data).loss,
                          evaluate(params, spec, data.val, data).loss)]
    first_grad_max, diverged, updates, epochs_done = {}, None, 0, 0
    good = params                          # the last parameters with finite losses (epoch end)
    bar = _progress(config.epochs, progress)
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n) if config.shuffle else np.arange(n)
        for step, lo in enumerate(range(0, n, config.batch_size), start=1):
            idx = order[lo:lo + config.batch_size]
            with np.errstate(over="ignore", invalid="ignore"):   # divergence is checked below
                loss, grads = loss_and_grads_trusted(params, xs[idx], ys[idx], spec)
            if not first_grad_max:
                first_grad_max = {k: float(np.max(np.abs(g))) for k, g in grads.arrays().items()}
            if not math.isfinite(loss):
                diverged = Divergence(epoch, step, f"the loss became {loss}")
                break
            if len(idx) > 1:                                  # mean over the batch's windows
                grads = tree_map(lambda g: g / len(idx), grads)
            new, new_state = opt.update(params, clip(grads, config.clip), state)
            if not _finite(new):
                diverged = Divergence(epoch, step, "the parameters became infinite or NaN")
                break
            params, state, updates = new, new_state, updates + 1
        if diverged:
            break
        tr, va = evaluate(params, spec, data.train, data), evaluate(params, spec, data.val, data)
        if not (math.isfinite(tr.loss) and math.isfinite(va.loss)):
            bad = tr.loss if not math.isfinite(tr.loss) else va.loss
            diverged = Divergence(epoch, step, f"the loss at the end of the epoch became {bad}")
            break
        history.append(EpochStats(epoch, tr.loss, va.loss))
        good, epochs_done = params, epoch
        if bar is not None:
            bar.set_postfix_str(f"loss/window: train {tr.loss:.3g}, val {va.loss:.3g}",
                                refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    params = good                          # after a divergence: the end of the last good epoch
    train_eval = evaluate(params, spec, data.train, data)
    val_eval = evaluate(params, spec, data.val, data)
    return TrainResult(params, spec, history, train_eval, val_eval, time.perf_counter() - start,
                       updates, epochs_done, diverged, sat_init,
                       saturation(params, xs, spec), first_grad_max)


def _progress(epochs: int, enabled: bool):
    """A tqdm bar over epochs (on stderr), or None."""
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=epochs, desc="epoch", unit="epoch", leave=True, dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}")


def persistence_rmse(data: Dataset, windows: Windows) -> float:
    """RMSE (data units) of the naive forecast 'next value = last value', for comparison."""
    v = data.series.values[:, list(data.target_cols)]
    return float(np.sqrt(np.mean((v[windows.rows - 1] - v[windows.rows]) ** 2)))
