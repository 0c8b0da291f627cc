"""The benchmark sections. Each takes the run's `Settings` and returns a `report.Section`.

Size letters: B batch, T time steps, D input features, H hidden units, O outputs.
Ratios are handgrad's time over the other's (<= 1 means handgrad is at least as fast), except
"speedup" columns, which are the other's time over handgrad's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import NamedTuple

import numpy as np

import handgrad as hg

from . import loop_model, problems
from .report import Section, Target, skipped
from .timing import interleaved, matmul_call, peak_memory


class Settings(NamedTuple):
    quick: bool
    seed: int
    repeats: int             # timed samples per implementation; the median is reported
    loop_repeats: int        # the same for the slow tutorial-style loop
    warmup: int              # untimed calls before timing (JIT compilation, caches)
    loop_max_records: int    # the loop runs on at most this many records; time scaled to B
    sizes: tuple             # problems.Size for the one-gradient comparison
    truncations: tuple       # None, Window(k)
    gated_sizes: tuple       # problems.Size of the GRU and the LSTM (full BPTT only)
    gradient_targets: dict   # (size name, truncation label) -> {"jax" | "torch": bound}
    large: problems.Size     # matmul-rate and memory size
    train_epochs: tuple      # (lo, hi): --faithful training timed at both, per epoch
    train_windows: int
    train_lr: float
    train_clip: float
    train_repeats: int
    sweep_sizes: tuple       # problems.Size, many-to-one
    checkpoint_sizes: tuple  # problems.Size for loss_and_grads(..., memory=...) (full BPTT)
    checkpoint_repeats: int
    check_examples: int
    test_profiles: tuple     # Hypothesis profiles for the optional test-suite timing
    test_timeout: float      # seconds per profile


def _max_rel_error(actual, expected) -> float:
    """The worst normwise relative error over the gradients present in `expected`."""
    return max(hg.rel_error(np.asarray(a), e) for a, e in zip(actual, expected) if e is not None)


def _ms(seconds):
    return None if seconds is None else 1e3 * seconds


def _label(trunc) -> str:
    return "full" if trunc is None else repr(trunc)


# --- one gradient -------------------------------------------------------------------------------

def _gradient_row(settings: Settings, size: problems.Size, trunc, torch_ok: bool, jax_ok: bool):
    spec = replace(size.spec, truncation=trunc)
    p = problems.make_problem(size, settings.seed)
    gated = spec.cell != "elman"
    fns, notes = {}, []
    fns["handgrad"] = lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec)
    _, grads = fns["handgrad"]()
    errors = {}

    if jax_ok:
        from . import jax_model
        if gated:
            jax_fn = jax_model.make_gated_value_and_grad(spec)
            jax_args = jax_model.gated_to_device(p, np.zeros((size.B, size.H)))
        else:
            jax_fn = jax_model.make_value_and_grad(spec)
            jax_args = jax_model.to_device(p, np.zeros((size.B, size.H)))
        fns["jax"] = lambda: jax_model.call_blocking(jax_fn, jax_args)
        errors["jax"] = _max_rel_error(fns["jax"]()[1], grads)

    if torch_ok:
        from . import torch_model
        tm = (torch_model.make_gated_value_and_grad if gated
              else torch_model.make_value_and_grad)(spec, p)
        if tm.fn is not None:
            fns["torch"] = tm.fn
            errors["torch"] = _max_rel_error(tm.fn()[1], grads)
        else:
            notes.append(f"{size.name} {_label(trunc)}: torch not run ({tm.note})")

    n = min(size.B, settings.loop_max_records)
    if not gated:                      # the tutorial-style loop is an Elman RNN
        xs_n, ys_n = p.xs[:n], p.ys[:n]
        fns["loop"] = lambda: loop_model.loss_and_grads(p.params, xs_n, ys_n, spec)
        _, grads_n = hg.loss_and_grads(p.params, xs_n, ys_n, spec)
        errors["loop"] = _max_rel_error(fns["loop"]()[1], grads_n)
        if n < size.B:
            notes.append(f"{size.name} {_label(trunc)}: loop timed on {n} of {size.B} records, "
                         f"time scaled by {size.B / n:g} (it is linear in records)")

    repeats = {name: settings.loop_repeats if name == "loop" else settings.repeats for name in fns}
    t = interleaved(fns, repeats, settings.warmup)
    loop_s = t["loop"].median * size.B / n if "loop" in t else None
    hg_s = t["handgrad"].median
    torch_s = t["torch"].median if "torch" in t else None
    jax_s = t["jax"].median if "jax" in t else None
    row = {"size": size.name, "B,T,D,H": f"{size.B},{size.T},{size.D},{size.H}",
           "truncation": _label(trunc),
           "handgrad ms": _ms(hg_s), "jax ms": _ms(jax_s), "torch ms": _ms(torch_s),
           "loop ms": _ms(loop_s),
           "hg/jax": None if jax_s is None else hg_s / jax_s,
           "hg/torch": None if torch_s is None else hg_s / torch_s,
           "loop speedup": None if loop_s is None else loop_s / hg_s,
           "err jax": errors.get("jax"), "err torch": errors.get("torch"),
           "err loop": errors.get("loop"),
           "samples": {name: timing.repeats for name, timing in t.items()}}
    return row, notes


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def gradient(settings: Settings, torch_ok: bool) -> Section:
    """One loss-and-gradient call: handgrad vs jit-compiled JAX vs PyTorch vs the per-record
    loop, at every size and truncation of `settings`."""
    rows, notes, targets = [], [], []
    jax_ok = jax_available()
    plan = [(size, trunc) for size in settings.sizes for trunc in settings.truncations]
    plan += [(size, None) for size in settings.gated_sizes]
    for size, trunc in plan:
        row, row_notes = _gradient_row(settings, size, trunc, torch_ok, jax_ok)
        rows.append(row)
        notes += row_notes
        for other, bound in settings.gradient_targets.get((size.name, row["truncation"]),
                                                          {}).items():
            targets.append(Target(f"handgrad/{other}, {size.name}, {row['truncation']}",
                                  row[f"hg/{other}"], "<=", bound))
    if not torch_ok:
        notes.append("PyTorch not run (not installed, or --no-torch): its columns are empty")
    if not jax_ok:
        notes.append("JAX is not installed (pip install -e .[reference]): its columns are empty")
    notes.append("err *: max normwise relative error of that implementation's gradients against "
                 "handgrad's (the same work is being timed)")
    notes.append(f"medians of up to {settings.repeats} interleaved samples "
                 f"({settings.loop_repeats} for the loop; fewer for calls slower than a few "
                 f"seconds, at least 3; counts in the JSON) after up to {settings.warmup} "
                 f"warm-up calls")
    cols = ["size", "B,T,D,H", "truncation", "handgrad ms", "jax ms", "torch ms", "loop ms",
            "hg/jax", "hg/torch", "loop speedup", "err jax", "err torch", "err loop"]
    return Section("one gradient", cols, rows, targets, notes)


# --- the machine's matmul rate ------------------------------------------------------------------

def rnn_flops(size: problems.Size) -> dict:
    """Matmul flops of one full-BPTT loss-and-gradient (forward + backward), by product shape.

    step: the 2T sequential (B, H) @ (H, H) products (forward recurrence, backward carry);
    rest: the whole-sequence products (U x for all t, dW, dU, outputs, dV, dL/dh through V).
    """
    B, T, D, H, O = size.B, size.T, size.D, size.H, size.O
    S = T if size.spec.output == "all" else 1
    step = 2 * T * (2 * B * H * H)
    rest = 2 * T * B * H * H + 2 * (2 * T * B * D * H) + 3 * (2 * S * B * H * O)
    return {"step": step, "rest": rest, "total": step + rest}


CONTENDED = 0.25   # a step product slower than this fraction of the square one's rate: contention


def matmul(settings: Settings) -> Section:
    """The float64 matmul rate at the RNN's own shapes, and the fraction handgrad reaches."""
    size = settings.large
    B, T, H = size.B, size.T, size.H
    p = problems.make_problem(size, settings.seed)
    spec = replace(size.spec, truncation=None)
    n = 256 if settings.quick else 1024
    square = f"square ({n})^3"
    fns = {"handgrad": lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec),
           "step (B,H)@(H,H)": matmul_call(B, H, H, settings.seed),
           "time sum (H,TB)@(TB,H)": matmul_call(H, T * B, H, settings.seed),
           square: matmul_call(n, n, n, settings.seed)}
    t = interleaved(fns, {k: settings.repeats for k in fns}, settings.warmup)
    flops = rnn_flops(size)
    mm_flops = {"step (B,H)@(H,H)": 2 * B * H * H, "time sum (H,TB)@(TB,H)": 2 * H * T * B * H,
                square: 2 * n ** 3}
    rates = {k: mm_flops[k] / t[k].median for k in mm_flops}
    # the rate of the RNN's own product mix: its step products at the step rate, the rest at
    # the (faster) whole-sequence rate; a matmul-only lower bound on the gradient's time
    mix_time = (flops["step"] / rates["step (B,H)@(H,H)"]
                + flops["rest"] / rates["time sum (H,TB)@(TB,H)"])
    mix_rate = flops["total"] / mix_time
    hg_rate = flops["total"] / t["handgrad"].median
    rows = [{"what": k, "GFLOP": mm_flops[k] / 1e9, "ms": _ms(t[k].median),
             "GFLOP/s": rates[k] / 1e9} for k in mm_flops]
    rows.append({"what": "RNN product mix (matmul-only bound)", "GFLOP": flops["total"] / 1e9,
                 "ms": _ms(mix_time), "GFLOP/s": mix_rate / 1e9})
    rows.append({"what": f"handgrad full BPTT, {size.name}", "GFLOP": flops["total"] / 1e9,
                 "ms": _ms(t["handgrad"].median), "GFLOP/s": hg_rate / 1e9,
                 "handgrad fraction": hg_rate / mix_rate})
    for k in ("step (B,H)@(H,H)", square):
        rows[list(mm_flops).index(k)]["handgrad fraction"] = hg_rate / rates[k]
    notes = [f"{size.name}: B={B}, T={T}, D={size.D}, H={H}, O={size.O}, {spec.activation}, "
             f"output={spec.output}; flops count only the matmuls of forward + backward",
             "handgrad fraction = handgrad's flop rate / the rate in that row; the target uses "
             "the square product's rate (issue 14)"]
    step_vs_square = rates["step (B,H)@(H,H)"] / rates[square]
    caveat = ""
    if step_vs_square < CONTENDED:
        caveat = (f"unreliable: the step product ran at {step_vs_square:.0%} of the square "
                  f"product's rate (BLAS threads contended with other processes); rerun with "
                  f"--threads 1 --clock cpu")
        notes.append(caveat)
    target = Target(f"handgrad share of the {square} matmul rate, {size.name}",
                    hg_rate / rates[square], ">=", 0.5, caveat)
    return Section("matmul rate", ["what", "GFLOP", "ms", "GFLOP/s", "handgrad fraction"], rows,
                   [target], notes)


# --- the tutorial's training --------------------------------------------------------------------

def training(settings: Settings) -> Section:
    """`handgrad train --faithful` (the tutorial's hyperparameters: uniform(0, 1) weights, lr
    1e-4, Window(5), batch 1, clip [-10, 10], train and val loss every epoch) against the
    tutorial's own published program (`published_loop`), per epoch: each is timed for two epoch
    counts and the difference divided by the extra epochs, so fixed costs (data, set-up, final
    evaluation and diagnosis) cancel."""
    from handgrad.train.data import tutorial_dataset
    from handgrad.train.loop import TrainConfig, train

    from . import published_loop

    data = tutorial_dataset()
    arrays = published_loop.tutorial_arrays()
    lo, hi = settings.train_epochs
    fns = {}
    for e in (lo, hi):
        config = TrainConfig(init="tutorial", lr=settings.train_lr, epochs=e, seed=settings.seed)
        fns[f"handgrad {e}"] = lambda config=config: train(data, config, progress=False)
        fns[f"published {e}"] = lambda e=e: published_loop.train(e, settings.seed, *arrays)
    t = interleaved(fns, {k: settings.train_repeats for k in fns}, warmup=1)
    per_epoch = {name: (t[f"{name} {hi}"].median - t[f"{name} {lo}"].median) / (hi - lo)
                 for name in ("handgrad", "published")}
    speedup = per_epoch["published"] / per_epoch["handgrad"]
    row = {"epochs timed": f"{lo} and {hi}", "windows": len(data.train.xs),
           "handgrad ms/epoch": _ms(per_epoch["handgrad"]),
           "published ms/epoch": _ms(per_epoch["published"]), "speedup": speedup,
           "handgrad fixed ms": _ms(t[f"handgrad {lo}"].median - lo * per_epoch["handgrad"]),
           "published fixed ms": _ms(t[f"published {lo}"].median - lo * per_epoch["published"])}
    notes = ["handgrad: handgrad.train.train with `--faithful`'s settings (exact gradient, and "
             "the train and val loss every epoch, divergence checks); published: the tutorial's "
             "program op for op (benchmarks/published_loop.py: per epoch its train and val loss "
             "passes, then for each window its forward pass, its published backward pass with "
             "the inner truncation loop, clipping and the SGD step; its gradient is the "
             "published, wrong one, equal to handgrad.tutorial_code's)",
             f"per epoch = (time of {hi} epochs - time of {lo}) / {hi - lo}, medians of "
             f"{settings.train_repeats} interleaved runs"]
    target = Target("--faithful training per epoch vs the published loop (speedup)", speedup,
                    ">=", 20.0)
    return Section("tutorial training (--faithful)", list(row), [row], [target], notes)


# --- truncation sweep, oracle, test suite -------------------------------------------------------

def sweep(settings: Settings) -> Section:
    """hg.truncation_sweep over every k vs one full gradient (many-to-one)."""
    if not hasattr(hg, "truncation_sweep"):
        return skipped("truncation sweep", "hg.truncation_sweep is not available yet")
    rows, targets = [], []
    for size in settings.sweep_sizes:
        p = problems.make_problem(size, settings.seed)
        spec = replace(size.spec, truncation=None)
        fns = {"sweep": lambda: hg.truncation_sweep(p.params, p.xs, p.ys, spec),
               "full": lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec)}
        t = interleaved(fns, {k: settings.repeats for k in fns}, settings.warmup)
        ratio = t["sweep"].median / t["full"].median
        rows.append({"size": size.name, "B,T,D,H": f"{size.B},{size.T},{size.D},{size.H}",
                     "ks": size.T, "sweep ms": _ms(t["sweep"].median),
                     "full ms": _ms(t["full"].median), "sweep/full": ratio})
        targets.append(Target(f"sweep/full gradient, {size.name}", ratio, "<=", 1.5))
    return Section("truncation sweep", list(rows[0]), rows, targets,
                   ["the sweep computes Window(k) for k = 0..T-1 (default ks)"])


def oracle(settings: Settings) -> Section:
    """hg.check cases per second, handgrad's own gradient as the candidate."""
    check = getattr(hg, "check", None)
    if check is None:
        try:
            from handgrad.oracle import check
        except ImportError:
            return skipped("oracle", "hg.check is not available yet")
    rows = []
    for name, spec in (("tutorial", hg.Spec.tutorial()), ("default", hg.Spec())):
        def candidate(params, xs, ys, h0, spec=spec):
            return hg.loss_and_grads(params, xs, ys, spec, h0=h0)
        check(candidate, spec, max_examples=2, seed=settings.seed, save_dir=None)   # warm-up
        start = time.perf_counter()
        check(candidate, spec, max_examples=settings.check_examples, seed=settings.seed,
              save_dir=None)
        seconds = time.perf_counter() - start
        rows.append({"spec": name, "examples": settings.check_examples, "s": seconds,
                     "cases/s": settings.check_examples / seconds})
    fresh = first_mismatch_fresh_process()
    rows.append({"spec": "fresh process, first mismatch", "examples": None, "s": fresh["import+check s"]})
    notes = ["one hg.check call per spec, timed once",
             f"fresh process: `python -c` importing handgrad and running hg.check on the classic "
             f"gallery's 'W_not_transposed' candidate (default spec) until GradientMismatch is "
             f"raised; s = from before `import handgrad` to the mismatch (interpreter start "
             f"excluded; the whole process took {fresh['process s']:.2f} s wall)"]
    target = Target("hg.check first mismatch in a fresh process, s", fresh["import+check s"],
                    "<=", 1.0)
    return Section("oracle", list(rows[0]), rows, [target], notes)


FRESH_CHECK = """
import time
t0 = time.perf_counter()
import handgrad as hg
from handgrad.gallery.classic import rnn
spec = hg.Spec()
try:
    hg.check(rnn(spec, "W_not_transposed"), spec, seed=0, save_dir=None)
except hg.GradientMismatch:
    print(time.perf_counter() - t0)
"""


def first_mismatch_fresh_process() -> dict:
    """Seconds from `import handgrad` to the first GradientMismatch, in a new interpreter."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("HANDGRAD_CONFIRM_JAX", None)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", FRESH_CHECK], capture_output=True,
                              text=True, timeout=300, cwd=root, env=env)
        wall = time.perf_counter() - start
        inner = float(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
        runs.append((inner, wall))
    runs.sort(key=lambda r: (r[0] is None, r[0]))
    inner, wall = runs[len(runs) // 2]
    return {"import+check s": inner, "process s": wall}


def test_suite(settings: Settings) -> Section:
    """Wall time of `pytest -n 2` per Hypothesis profile (slow: only with --tests)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for profile in settings.test_profiles:
        env = dict(os.environ, HANDGRAD_PROFILE=profile)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2",
                                   "-p", "no:cacheprovider"], cwd=root, env=env,
                                  capture_output=True, text=True, timeout=settings.test_timeout)
            outcome = (proc.stdout.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            outcome = f"timed out after {settings.test_timeout:g} s"
        rows.append({"profile": profile, "wall s": time.perf_counter() - start,
                     "outcome": outcome})
    return Section("test suite", ["profile", "wall s", "outcome"], rows, [],
                   ["python -m pytest -q -n 2, one run per HANDGRAD_PROFILE"])


# --- memory -------------------------------------------------------------------------------------

def memory(settings: Settings) -> Section:
    """Peak traced memory of one gradient vs the hidden states it must keep, (T+1) B H floats;
    and checkpointed full BPTT (`memory=`) against the plain one, memory and time."""
    from handgrad.bptt import memory_needed

    size = settings.large
    p = problems.make_problem(size, settings.seed)
    states = (size.T + 1) * size.B * size.H * 8
    rows, targets = [], []
    for trunc in settings.truncations:
        spec = replace(size.spec, truncation=trunc)
        hg.loss_and_grads(p.params, p.xs, p.ys, spec)                  # warm-up
        peak = peak_memory(lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec))
        rows.append({"size": size.name, "B,T,D,H": f"{size.B},{size.T},{size.D},{size.H}",
                     "truncation": _label(trunc), "memory=": None, "peak MB": peak / 1e6,
                     "states MB": states / 1e6, "peak/states": peak / states})
        if trunc is None:
            targets.append(Target(f"memory peak/states, {size.name}, full", peak / states,
                                  "<=", 2.0))
    for size in settings.checkpoint_sizes:
        p = problems.make_problem(size, settings.seed)
        spec = size.spec
        states = (size.T + 1) * size.B * size.H * 8
        budget = min(memory_needed(spec, size.B, size.T, size.H, L)
                     for L in range(1, size.T + 1))
        fns = {"plain": lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec),
               "checkpointed": lambda: hg.loss_and_grads(p.params, p.xs, p.ys, spec,
                                                         memory=budget)}
        peaks = {k: peak_memory(f) for k, f in fns.items()}
        t = interleaved(fns, {k: settings.checkpoint_repeats for k in fns}, warmup=1)
        for k in fns:
            rows.append({"size": size.name, "B,T,D,H": f"{size.B},{size.T},{size.D},{size.H}",
                         "truncation": "full", "memory=": None if k == "plain" else budget / 1e6,
                         "peak MB": peaks[k] / 1e6, "states MB": states / 1e6,
                         "peak/states": peaks[k] / states, "s": t[k].median,
                         "time/plain": t[k].median / t["plain"].median,
                         "memory saved": 1 - peaks[k] / peaks["plain"]})
    notes = ["tracemalloc peak during one hg.loss_and_grads (inputs and parameters excluded, "
             "returned gradients included)",
             "memory= (MB): the smallest budget checkpointing accepts (checkpoints about every "
             "sqrt(T) steps); memory saved = 1 - peak / the plain backward's peak; time/plain: "
             f"medians of {settings.checkpoint_repeats} interleaved calls"]
    cols = ["size", "B,T,D,H", "truncation", "memory=", "peak MB", "states MB", "peak/states",
            "s", "time/plain", "memory saved"]
    return Section("memory", cols, rows, targets, notes)
