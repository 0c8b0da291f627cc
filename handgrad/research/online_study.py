"""The study behind `handgrad estimators`: every estimator's bias, noise and cost on the tutorial's
task and on delayed recall, UORO's noise against T, and online training on delayed recall.

Size letters: B windows or streams, T steps, D inputs, H hidden units.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..spec import Spec
from .estimators import Row, measure, uoro_noise
from .online import recall_batch, recall_stream, train_online


class StudyConfig(NamedTuple):
    """What `handgrad estimators` varies; each default is commented."""

    windows: int = 8            # tutorial task: its first 8 training windows (RTRL: ~0.3 s each)
    seeds: int = 32             # estimates per stochastic estimator (ARTBP, UORO)
    hidden: int = 16            # recall task: H
    delay: int = 6              # recall task: y_t = x_{t-6}
    k: int = 2                  # the short truncation, k < delay: Window(k), Chunks(k + 1)
    streams: int = 8            # recall task: B parallel streams / sequences
    T: int = 200                # recall task: steps of the problem the metrics are measured on
    steps: int = 20_000         # online training steps per scheme
    lr: float = 1e-3            # Adam, the same for every scheme
    noise_Ts: tuple = (10, 30, 100, 300, 1000)   # UORO's noise against T
    seed: int = 0
    estimators: tuple = None    # the same list for both tasks, instead of the two below

    def tutorial_estimators(self):
        if self.estimators:
            return self.estimators
        return ("bptt", "window:2", "window:5", "chunks:10", "artbp:0.1", "uoro", "snap:1",
                "snap:2", "rtrl")

    def recall_estimators(self):
        if self.estimators:
            return self.estimators
        d, k = self.delay, self.k
        return ("bptt", f"window:{k}", f"window:{d}", f"chunks:{k + 1}", f"chunks:{2 * d}",
                "artbp:0.1", "uoro", "snap:1", "snap:2", "rtrl")

    def online_schemes(self):
        d, k = self.delay, self.k
        return ("rtrl", "uoro", "snap:1", f"window:{k}", f"window:{d}", f"chunks:{k + 1}",
                f"chunks:{2 * d}")


class Study(NamedTuple):
    rows: list                # Row, every task
    runs: list                # OnlineRun, one per scheme
    noise: dict               # label -> (Ts, {"all" | "last": rel_std (len(Ts),)})
    seconds: dict             # part -> seconds


def tutorial_problem(windows: int, seed: int = 0):
    """The tutorial's model (sigmoid, no biases, many-to-one, H = 100) at its `handgrad train`
    initialisation, on the first `windows` training windows of the sine task."""
    from ..params import init_params
    from ..train import TrainConfig, tutorial_dataset
    data = tutorial_dataset()
    config = TrainConfig(seed=seed)
    spec = Spec(**{**config.spec().__dict__, "truncation": None})
    xs, ys = data.train.xs[:windows], data.train.ys[:windows]
    params = init_params(spec, xs.shape[2], config.hidden, ys.shape[1], seed=config.seed,
                         init=config.init, scale=config.init_scale)
    return params, xs, ys, spec


def recall_spec() -> Spec:
    return Spec(activation="tanh", bias=True, output="all", loss="half_squared", reduction="sum")


def run_study(config: StudyConfig = StudyConfig(), train: bool = True, log=None) -> Study:
    """Measure everything (see the module docstring). log(text), when given, hears progress."""
    from ..params import init_params
    from ..train.optim import make_optimizer
    say = log or (lambda text: None)
    seconds = {}
    t0 = time.perf_counter()
    params, xs, ys, spec = tutorial_problem(config.windows, config.seed)
    say(f"tutorial task: {len(config.tutorial_estimators())} estimators on {config.windows} windows")
    rows = measure("tutorial (init)", params, xs, ys, spec, config.tutorial_estimators(),
                   seeds=config.seeds, seed=config.seed)
    seconds["tutorial"] = time.perf_counter() - t0

    rspec = recall_spec()
    p0 = init_params(rspec, 1, config.hidden, 1, seed=config.seed)
    rx, ry = recall_batch(config.streams, max(config.T, max(config.noise_Ts)), config.delay,
                          seed=config.seed + 1)
    runs = []
    trained = None
    if train:
        t0 = time.perf_counter()
        for scheme in config.online_schemes():
            say(f"online training: {scheme}")
            run = train_online(scheme, p0, rspec, recall_stream(config.streams, config.delay,
                                                                seed=config.seed + 2),
                               config.steps, make_optimizer("adam", config.lr),
                               report_every=max(1, config.steps // 100), seed=config.seed)
            runs.append(run)
            if scheme == "rtrl":
                trained = run.params
        seconds["training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    states = [("init", p0)] + ([("RTRL-trained", trained)] if trained is not None else [])
    noise = {}
    for label, p in states:
        say(f"recall task ({label}): estimators")
        rows += measure(f"recall d={config.delay} ({label})", p, rx[:, :config.T],
                        ry[:, :config.T], rspec, config.recall_estimators(), seeds=config.seeds,
                        seed=config.seed)
        noise[label] = (np.array(config.noise_Ts),
                        {out: uoro_noise(p, rx, ry, Spec(**{**rspec.__dict__, "output": out}),
                                         config.noise_Ts, seeds=config.seeds, seed=config.seed)
                         for out in ("all", "last")})
    seconds["recall"] = time.perf_counter() - t0
    return Study(rows, runs, noise, seconds)


def study_json(study: Study, config: StudyConfig) -> dict:
    return {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config._asdict().items()},
        "table": [r._asdict() for r in study.rows],
        "uoro_noise": {k: {"T": Ts.tolist(), **{f"rel_std_{o}": a.tolist() for o, a in v.items()}}
                       for k, (Ts, v) in study.noise.items()},
        "online": [{"scheme": r.scheme, "steps": r.steps.tolist(), "loss": r.loss.tolist(),
                    "seconds": r.seconds} for r in study.runs],
        "seconds": study.seconds,
    }


def online_summary(runs: list) -> str:
    """Mean online loss per stream and step over the last tenth of training, per scheme."""
    if not runs:
        return ""
    lines = ["online training on delayed recall (mean loss over the last 10% of steps; "
             "0.5 = no memory of x_{t-d}):"]
    for r in runs:
        tail = r.loss[-max(1, len(r.loss) // 10):]
        lines.append(f"  {r.scheme:<10} {float(np.mean(tail)):8.4f}   ({r.seconds:.1f} s)")
    return "\n".join(lines)


MARKERS = {"bptt": "*", "window": "s", "chunks": "D", "tbptt": "D", "artbp": "v", "uoro": "o",
           "snap": "^", "rtrl": "P"}
FLOOR = 1e-17                 # exact methods sit at float64 round-off: drawn here


KIND_COLORS = {"bptt": "black", "window": "tab:orange", "chunks": "tab:red", "tbptt": "tab:red",
               "artbp": "tab:purple", "uoro": "tab:blue", "snap": "tab:green", "rtrl": "tab:cyan"}


def _style(name: str, names) -> tuple:
    """(color, line style) of an estimator: one color per kind; within a kind, the shorter
    truncation (or SnAp-1) dotted, the longer one dashed; online methods solid."""
    kind, _, arg = name.partition(":")
    same = sorted((n for n in names if n.partition(":")[0] == kind),
                  key=lambda n: float(n.partition(":")[2].split(",")[0] or 0))
    ls = "-" if len(same) < 2 else (":" if same.index(name) == 0 else "--")
    return KIND_COLORS.get(kind, "grey"), ls


def _scatter(ax, rows: list[Row], title: str):
    """Relative RMS error of one estimate against the time per step, one point per estimator."""
    names = [r.estimator for r in rows]
    for i, r in enumerate(rows):
        kind = r.estimator.split(":")[0]
        color, ls = _style(r.estimator, names)
        y = max(r.rel_rmse, FLOOR)
        ax.scatter([r.us_per_step], [y], marker=MARKERS.get(kind, "o"), s=46, color=color,
                   facecolors="none" if ls == ":" else color, zorder=3)
        ax.annotate(r.estimator, (r.us_per_step, y), fontsize=7,
                    xytext=(4, 3) if i % 2 == 0 else (4, -10), textcoords="offset points")
    ax.axhspan(FLOOR / 10, 1e-14, color="grey", alpha=0.12, lw=0)
    ax.text(0.02, 0.03, "exact (float64 round-off)", transform=ax.transAxes, fontsize=7,
            color="grey")
    ax.set(xscale="log", yscale="log", xlabel="time per step (us, whole batch)",
           ylabel="relative RMS error of one estimate", title=title)
    ax.set_ylim(FLOOR / 10, 30)


def plot_study(study: Study, config: StudyConfig, size=(12, 8.5), dpi: int = 100) -> bytes:
    """(a), (b) error against cost on both tasks; (c) UORO's noise against T; (d) online
    training loss curves."""
    from .study import _figure, _plain_log_labels, png_bytes
    fig, ax = _figure(2, 2, size, dpi)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.92, wspace=0.22, hspace=0.32)
    tasks = list(dict.fromkeys(r.task for r in study.rows))
    (a, b), (c, d) = ax
    _scatter(a, [r for r in study.rows if r.task == tasks[0]], f"(a) {tasks[0]}")
    _scatter(b, [r for r in study.rows if r.task == tasks[-1]], f"(b) {tasks[-1]}")
    for i, (label, (Ts, v)) in enumerate(study.noise.items()):
        c.plot(Ts, v["all"], "o-", color=f"C{i}", label=f"{label}: every loss term")
        c.plot(Ts, v["last"], "s--", color=f"C{i}", label=f"{label}: the last loss term only")
    c.set(xscale="log", yscale="log", xlabel="T (steps)",
          ylabel="UORO: sqrt(E||g_s - g||^2) / ||g||",
          title=f"(c) UORO noise against T, recall task ({config.seeds} seeds)")
    c.legend(fontsize=7)
    names = [r.scheme for r in study.runs]
    for r in study.runs:
        color, ls = _style(r.scheme, names)
        d.plot(r.steps, np.maximum(r.loss, 1e-6), ls, color=color, label=r.scheme, lw=1.2)
    if study.runs:
        d.axhline(0.5, color="grey", lw=0.8, ls=":")
        d.text(config.steps * 0.02, 0.55, "no memory (predict 0)", fontsize=6, color="grey")
        d.legend(fontsize=7, ncol=2)
    d.set(yscale="log", xlabel="online step", ylabel="online loss per stream and step",
          title=f"(d) online training, recall d = {config.delay}, H = {config.hidden}, Adam "
                f"{config.lr:g}")
    _plain_log_labels(a, b, c, d)
    fig.suptitle("Gradient estimators against the exact gradient: bias, noise, cost, and training")
    return png_bytes(fig)
