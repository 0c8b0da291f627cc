"""Any program as a candidate: `handgrad check --exec CMD`, through case files.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

For each case the oracle draws, `ExecCandidate` writes a case file (`handgrad.casefile`: the
inputs U, W, V, b, c, xs, ys, h0, the spec, and the reference answers, which the program
ignores), runs CMD with `{case}` and `{out}` replaced by the case file's path and the path
where the program must write its candidate file (grad_U, grad_W, grad_V, grad_b, grad_c;
grad_h0 and loss optional), reads that file and hands its answers to the oracle. So
`hg.check` searches, shrinks and reports a C++, Rust, Julia or CUDA implementation exactly as
it does a Python one, and the time-step locator and the diagnosis run the program again on
the problems they need.

The command runs through the shell, in the current directory, in its own process group: one
that outlives `timeout` is killed with its children and reported as timed out (which ends the
search: a hang is not shrunk). A program that exits with a nonzero status, writes no file or an
unreadable one is a `CandidateError` with the reason and its last line of stderr.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..casefile import case_from_arrays, read_candidate, write_case
from .run import DEFAULT_TIMEOUT, CandidateStopped

SUFFIXES = (".json", ".npz")


class ExecCandidate:
    """`candidate(params, xs, ys, h0) -> (loss, grads)` that runs `command` on a case file.

    `spec`: the spec written into every case file (the program reads it to know what to
    compute); `suffix`: ".json" or ".npz", the format of both files; `timeout`: seconds per run.
    After a search, `calls`, `seconds` (time spent in the program, writing and reading files)
    and `loss_returned` (False if any candidate file had no loss: then the loss was not checked).
    """

    def __init__(self, command: str, spec, timeout: Optional[float] = DEFAULT_TIMEOUT,
                 suffix: str = ".json"):
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"command must be a non-empty shell command, got {command!r}")
        if "{case}" not in command or "{out}" not in command:
            raise ValueError("command must contain {case} and {out} (the case file to read and "
                             f"the candidate file to write), got {command!r}")
        if suffix not in SUFFIXES:
            raise ValueError(f"suffix must be one of {SUFFIXES}, got {suffix!r}")
        self.command, self.spec, self.timeout, self.suffix = command, spec, timeout, suffix
        self.calls, self.seconds, self.loss_returned = 0, 0.0, True
        self.__name__ = f"exec: {command}"

    def __call__(self, params, xs, ys, h0):
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="handgrad-exec-") as tmp:
                case_path = Path(tmp) / f"case{self.suffix}"
                out_path = Path(tmp) / f"candidate{self.suffix}"
                case = case_from_arrays(self.spec, params, xs, ys, h0)
                write_case(case_path, case)
                self._run(case_path, out_path)
                if not out_path.exists():
                    raise CandidateStopped("bad_output", "the command exited with status 0 but "
                                           "wrote no candidate file to {out}")
                try:
                    answer = read_candidate(out_path, case)
                except ValueError as exc:
                    raise CandidateStopped("bad_output", "the candidate file is unusable: "
                                           + str(exc).replace(str(out_path), "{out}")) from None
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - start
        if answer.loss is None:
            self.loss_returned = False
        loss = case.loss if answer.loss is None else answer.loss
        return loss, {n: g.astype(answer.dtype) for n, g in answer.grads.items()}

    def _run(self, case_path: Path, out_path: Path) -> None:
        line = (self.command.replace("{case}", shlex.quote(str(case_path)))
                .replace("{out}", shlex.quote(str(out_path))))
        proc = subprocess.Popen(line, shell=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise CandidateStopped("timeout", f"the command did not finish within "
                                   f"{self.timeout:g} s (--timeout); it was killed with its "
                                   f"process group: {self.command}") from None
        except BaseException:
            _kill(proc)                        # interrupted (Ctrl-C, another timeout): no orphans
            raise
        if proc.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no stderr)"]
            how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exited with status {proc.returncode}")
            raise CandidateStopped("raised", f"the command {how}: {last[0][:300]}")


def _kill(proc) -> None:
    """SIGKILL the process group of `proc` (the shell and everything it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


# ---------------------------------------------------------------- the command line


def add_exec_arguments(parser) -> None:
    """`handgrad check --exec CMD` and its options (the spec options are `handgrad case`'s)."""
    from ..commands._types import float_between, int_at_least
    from ..commands.case import add_spec_arguments

    g = parser.add_argument_group(
        "--exec: check your own program (any language) through case files")
    g.add_argument("--exec", dest="exec_command", metavar="CMD",
                   help="shell command run on every case: {case} is the case file to read, "
                        "{out} the candidate file to write (grad_U, grad_W, grad_V, grad_b, "
                        "grad_c; grad_h0, loss optional)")
    g.add_argument("--max-examples", type=int_at_least(1), default=100,
                   help="cases to try (default 100)")
    g.add_argument("--timeout", type=float_between(0), default=DEFAULT_TIMEOUT,
                   help=f"seconds per run of CMD before it is killed (default {DEFAULT_TIMEOUT:g})")
    g.add_argument("--rtol", type=float_between(0, 1), default=None,
                   help="tolerance (default: by the candidate file's dtype)")
    g.add_argument("--sizes", metavar="B,T,D,H,O",
                   help="fix every size (values still vary); default: drawn, shrunk on failure")
    g.add_argument("--format", choices=("json", "npz"), default="json",
                   help="format of the case and candidate files (default json)")
    g.add_argument("--save-dir", default=".handgrad-failures",
                   help="where the minimal failing case is saved (default .handgrad-failures)")
    g.add_argument("--no-save", action="store_true", help="do not save the failing case")
    add_spec_arguments(parser)


def parse_sizes(text: Optional[str]):
    """'2,8,3,4,1' -> (2, 8, 3, 4, 1); None -> None."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) != 5 or min(sizes) < 1:
        raise ValueError(f"--sizes must be five integers >= 1, B,T,D,H,O, got {text!r}")
    return sizes


def run_exec_check(args) -> int:
    """The search of `handgrad check --exec`: prints the report; 0 pass, 1 a failure."""
    from ..commands.case import spec_from_args
    from .check import check
    from .report import GradientMismatch

    if args.quick or args.no_jax or args.json:
        raise ValueError("--quick, --no-jax and --json belong to the installation check, not "
                         "to --exec")
    spec = spec_from_args(args)
    sizes = parse_sizes(args.sizes)
    candidate = ExecCandidate(args.exec_command, spec, args.timeout, suffix=f".{args.format}")
    save_dir = None if args.no_save else args.save_dir
    try:
        report = check(candidate, spec, max_examples=args.max_examples, rtol=args.rtol,
                       seed=args.seed, sizes=sizes, save_dir=save_dir, timeout=None)
    except GradientMismatch as failure:
        print(failure)
        again = _in_format(failure.path, candidate.suffix)
        if again is not None:
            print(f"  again: handgrad compare {shlex.quote(str(again))} "
                  f"--exec {shlex.quote(args.exec_command)}")
        print(f"({candidate.calls} runs of the command in {candidate.seconds:.1f} s)")
        return 1
    print(report)
    rate = candidate.calls / candidate.seconds if candidate.seconds else float("inf")
    print(f"{candidate.calls} runs of the command in {candidate.seconds:.1f} s "
          f"({rate:.0f} cases/s)")
    if not candidate.loss_returned:
        print("note: some candidate files had no loss, so the loss was not checked on those")
    return 0


def _in_format(path, suffix: str):
    """The saved replay file (.npz) in the program's format: a copy next to it for .json."""
    from ..casefile import read_case

    if path is None or Path(path).suffix == suffix:
        return path
    copy = Path(path).with_suffix(suffix)
    try:
        write_case(copy, read_case(path))
    except (OSError, ValueError):
        return None
    return copy


def program_answer(case, command: str, timeout: Optional[float], suffix: str):
    """Run `command` once on `case` (a CaseFile): (Answer or Failure, the ExecCandidate), for
    `handgrad compare CASE --exec CMD`."""
    from .run import run

    candidate = ExecCandidate(command, case.spec, timeout, suffix=suffix)
    return run(candidate, case), candidate
