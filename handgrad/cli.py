"""The `handgrad` command line: one entry point, one module per command in `handgrad.commands`.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> exit status.
Exit status: 0 success, 1 a check failed, 2 usage error or bad input (one line on stderr, never a
traceback), 130 interrupted by Ctrl-C (one line; nothing half written: runs are published whole
or not at all, see handgrad._files), 141 the reader of the output went away (`| head`: quiet,
like any command-line tool; files already written stay whole). Heavy imports (jax, matplotlib)
happen inside run(), so `--help` is instant. `python -m handgrad` is the same command.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

COMMANDS = ("train", "check", "case", "compare", "truncation", "tutorial", "forecast", "estimators")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141       # 128 + SIGPIPE, what a shell reports for `yes | head -1`


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _megabytes(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of mebibytes, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="handgrad", description="Hand-derived BPTT for Elman, GRU and LSTM "
                     "networks, proven against JAX, complex step and finite differences; a "
                     "gradient oracle.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    parser.add_argument("--max-file-mb", type=_megabytes, metavar="N",
                        help="largest file (and decompressed .npz) read, in MiB (default 256; "
                             "also HANDGRAD_MAX_FILE_MB)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"handgrad.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def _on_sigint(signum, frame):
    from ._files import INTERRUPTED
    INTERRUPTED.set()
    raise KeyboardInterrupt


def _quiet_stdout() -> None:
    """After a broken pipe: send further output (and the flush at exit) to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv=None) -> int:
    from ._files import INTERRUPTED
    INTERRUPTED.clear()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            from ._cli_start import is_command_line
            # in the command-line process the work is done (or abandoned): a Ctrl-C while the
            # interpreter shuts down is ignored, so the exit status stays the command's
            signal.signal(signal.SIGINT, signal.SIG_IGN if is_command_line() else previous)


def _main(argv) -> int:
    from ._files import INTERRUPTED, file_limit
    command = "?"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        if args.command is None:
            parser.print_help()
            return 2
        with file_limit(args.max_file_mb):
            code = int(args.run(args) or 0)
        sys.stdout.flush()
        if INTERRUPTED.is_set():           # a Ctrl-C that something swallowed
            raise KeyboardInterrupt
        return code
    except KeyboardInterrupt:
        sys.stderr.write("handgrad: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, OSError) as exc:   # bad input: one line, no traceback
        sys.stderr.write(f"handgrad {command}: error: {_one_line(exc)}\n")
        return 2
    except Exception as exc:               # a bug in handgrad: still one line, but say so
        if os.environ.get("HANDGRAD_DEBUG"):
            raise
        sys.stderr.write(f"handgrad {command}: internal error: {type(exc).__name__}: "
                         f"{_one_line(exc)} (set HANDGRAD_DEBUG=1 for the traceback)\n")
        return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
