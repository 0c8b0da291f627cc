"""Benchmarks of handgrad: `python benchmarks/run.py [--quick] [--only SECTIONS] [--tests]`.

Prints a table of ratios per section and the targets (met / not met), and writes the same as
JSON to benchmarks/results/. One process, seeded; every comparison is timed in the same run,
interleaved, as the median of repeats after warm-up, so the ratios hold on a noisy machine even
when the absolute times do not.

Sections: gradient (handgrad vs jax.jit vs PyTorch vs a tutorial-style loop), matmul (the
machine's float64 matmul rate and handgrad's fraction of it), training (the tutorial's 25 epochs),
sweep (hg.truncation_sweep vs one gradient), oracle (hg.check cases per second), memory (peak
of one gradient vs its hidden states), tests (the suite's wall time per Hypothesis profile; only
with --tests, it is slow).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):   # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import handgrad as hg                                            # noqa: E402
from benchmarks import problems, report, sections, timing       # noqa: E402

SEED = 0
REPEATS = 9              # timed samples per implementation; the median is reported
LOOP_REPEATS = 3         # the same for the tutorial-style loop (slow)
WARMUP = 2               # untimed calls first (JIT compilation, caches)
LOOP_MAX_RECORDS = 8     # the loop runs on at most this many records; its time is scaled to B
TRUNCATIONS = (None, hg.Window(5))
TRAIN_EPOCHS = (1, 4)    # --faithful training, per epoch: timed at 1 and 4 epochs (fixed costs
TRAIN_WINDOWS = 100      # cancel); the tutorial's 100 windows, one at a time, lr 1e-4, every
                         # gradient element clipped to [-10, 10]
TRAIN_LR = 1e-4
TRAIN_CLIP = 10.0
TRAIN_REPEATS = 3
CHECK_EXAMPLES = 30      # hg.check examples per timed call
TEST_PROFILES = ("dev", "ci")
TEST_TIMEOUT = 1800.0
SWEEP_LARGE = problems.LARGE._replace(name="large many-to-one",
                                      spec=problems.LARGE.spec.__class__(
                                          activation="tanh", bias=True, output="last"))
# issue 14 (Elman) and issue 11 (gated cells): (size, truncation) -> {"jax" | "torch": bound}
GRADIENT_TARGETS = {
    ("tutorial", "full"): {"jax": 1.0}, ("tutorial", "Window(5)"): {"jax": 1.0},
    ("B=100", "full"): {"jax": 0.8},
    ("large", "full"): {"jax": 0.5}, ("large", "Window(5)"): {"jax": 0.3},
    ("gru large", "full"): {"jax": 1.0, "torch": 1.5},
    ("lstm large", "full"): {"jax": 1.0, "torch": 1.5},
}
# memory=...: checkpointed full BPTT at T = 1000 (the large size) and T = 100,000 (smaller B, H)
CHECKPOINT_SIZES = (problems.LARGE._replace(name="large T=1000", T=1000),
                    problems.Size("T=100000", 4, 100_000, 4, 128, 4, problems.LARGE_SPEC, False))
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SECTIONS = ("gradient", "matmul", "training", "sweep", "oracle", "memory", "tests")
DEFAULT_SECTIONS = SECTIONS[:-1]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def quick_targets() -> dict:
    """GRADIENT_TARGETS on the --quick stand-in sizes (a smoke test of the target rows)."""
    name = problems.LARGE_QUICK.name
    return {(k[0].replace("large", name), k[1]): v for k, v in GRADIENT_TARGETS.items()
            if "large" in k[0]}


def settings(quick: bool) -> sections.Settings:
    """The full run, or a seconds-long smoke run with small sizes and single samples."""
    if quick:
        return sections.Settings(
            quick=True, seed=SEED, repeats=1, loop_repeats=1, warmup=1, loop_max_records=2,
            sizes=(problems.LARGE_QUICK,),
            truncations=TRUNCATIONS,
            gated_sizes=tuple(problems.gated(problems.LARGE_QUICK, c) for c in ("gru", "lstm")),
            gradient_targets=quick_targets(),
            large=problems.LARGE_QUICK, train_epochs=(1, 2), train_windows=5, train_lr=TRAIN_LR,
            train_clip=TRAIN_CLIP, train_repeats=1, sweep_sizes=(problems.TUTORIAL,),
            checkpoint_sizes=(problems.LARGE_QUICK._replace(T=200),), checkpoint_repeats=1,
            check_examples=3, test_profiles=("dev",), test_timeout=TEST_TIMEOUT)
    return sections.Settings(
        quick=False, seed=SEED, repeats=REPEATS, loop_repeats=LOOP_REPEATS, warmup=WARMUP,
        loop_max_records=LOOP_MAX_RECORDS,
        sizes=(problems.TINY, problems.TUTORIAL, problems.MID, problems.LARGE),
        truncations=TRUNCATIONS,
        gated_sizes=tuple(problems.gated(size, cell) for cell in ("gru", "lstm")
                          for size in (problems.TUTORIAL, problems.LARGE)),
        gradient_targets=GRADIENT_TARGETS, large=problems.LARGE, train_epochs=TRAIN_EPOCHS,
        train_windows=TRAIN_WINDOWS, train_lr=TRAIN_LR, train_clip=TRAIN_CLIP,
        train_repeats=TRAIN_REPEATS, sweep_sizes=(problems.TUTORIAL, SWEEP_LARGE),
        checkpoint_sizes=CHECKPOINT_SIZES, checkpoint_repeats=3,
        check_examples=CHECK_EXAMPLES, test_profiles=TEST_PROFILES, test_timeout=TEST_TIMEOUT)


def parse_sections(text: str) -> tuple:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"sections must be a comma-separated subset of "
                                         f"{','.join(SECTIONS)}, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one sample each, JAX compiled without optimisation: "
                             "a smoke run of a few seconds whose numbers mean nothing")
    parser.add_argument("--only", type=parse_sections, default=None, metavar="SECTIONS",
                        help=f"comma-separated sections to run, from {','.join(SECTIONS)} "
                             f"(default: all but tests)")
    parser.add_argument("--tests", action="store_true",
                        help="also time the test suite per Hypothesis profile (slow)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="limit numpy's BLAS, PyTorch and XLA to N threads (needs "
                             "threadpoolctl; default: each library's own choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, the "
                             "steadier choice with --threads 1 on a shared machine")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="print the tables of an earlier results file and exit")
    parser.add_argument("--out", default=None,
                        help="JSON path (default: benchmarks/results/<UTC time>[-quick].json)")
    return parser


def run_section(name: str, cfg: sections.Settings, torch_ok: bool) -> report.Section:
    if name == "gradient":
        return sections.gradient(cfg, torch_ok)
    return {"matmul": sections.matmul, "training": sections.training, "sweep": sections.sweep,
            "oracle": sections.oracle, "memory": sections.memory,
            "tests": sections.test_suite}[name](cfg)


def limit_threads(n: int) -> dict:
    """At most `n` threads for BLAS (threadpoolctl), PyTorch and XLA (before JAX is imported)."""
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    if "jax" in sys.modules:
        raise ValueError("--threads must be applied before JAX is imported")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ValueError("--threads needs threadpoolctl: pip install threadpoolctl") from None
    threadpool_limits(n)
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if n == 1 else ""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    return {"threads": n, "xla_flags": os.environ["XLA_FLAGS"]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        try:
            print(report.render_file(args.render))
        except (OSError, ValueError, KeyError) as exc:
            print(f"cannot render {args.render}: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        threads = {"threads": "default"}
        if args.threads is not None:
            threads = limit_threads(args.threads)
    except ValueError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    timing.use_clock(args.clock)
    if args.quick:   # a smoke run: compile JAX fast (its times then mean nothing)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + QUICK_XLA_FLAGS).strip()
    names = args.only or DEFAULT_SECTIONS + (("tests",) if args.tests else ())
    cfg = settings(args.quick)
    from benchmarks import torch_model
    torch_ok = not args.no_torch and torch_model.available()
    started = time.perf_counter()
    done = []
    for name in names:
        print(f"[{time.perf_counter() - started:6.1f} s] {name} ...", file=sys.stderr, flush=True)
        done.append(run_section(name, cfg, torch_ok))
    text = report.render(done)
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or os.path.join(RESULTS, f"{stamp}{'-quick' if args.quick else ''}.json")
    info = report.machine()
    info["loadavg_end"] = list(os.getloadavg())
    info.update(threads)
    info["clock"] = args.clock
    payload = {"machine": info, "quick": args.quick, "seconds": time.perf_counter() - started,
               "sections": {s.name: s.as_dict() for s in done},
               "targets": [t.as_dict() for s in done for t in s.targets]}
    report.write_json(out, payload)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
