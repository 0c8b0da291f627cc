"""The `handgrad` command line: one entry point, one module per command in `handgrad.commands`.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> exit status.
Exit status: 0 success, 1 a check failed, 2 usage error or bad input (one line on stderr, never a
traceback). Heavy imports (jax, matplotlib) happen inside run(), so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ("train", "check", "case", "compare", "truncation", "tutorial", "forecast", "estimators")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="handgrad", description="Hand-derived BPTT for Elman RNNs, proven "
                     "against JAX, complex step and finite differences; a gradient oracle.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"handgrad.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("handgrad: interrupted\n")
        return 130
    except (ValueError, OSError) as exc:   # bad input: one line, no traceback
        sys.stderr.write(f"handgrad {args.command}: error: {exc}\n")
        return 2
    except Exception as exc:               # a bug in handgrad: still one line, but say so
        if os.environ.get("HANDGRAD_DEBUG"):
            raise
        sys.stderr.write(f"handgrad {args.command}: internal error: {type(exc).__name__}: {exc} "
                         "(set HANDGRAD_DEBUG=1 for the traceback)\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
