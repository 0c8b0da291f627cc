"""Ctrl-C while the `handgrad` command starts: one line and exit status 130, not a traceback.

Importing handgrad (numpy and the rest) takes a few tenths of a second, before
handgrad.cli.main can install its own handler. This module is imported first by
handgrad/__init__.py and acts only when this process is the handgrad command line (the
`handgrad` script, `python -m handgrad` or `python -m handgrad.cli`), never inside a program
that imports handgrad as a library. Nothing is written while importing, so exiting at once
loses nothing.
"""
from __future__ import annotations

import os
import signal
import sys

CLI_MODULES = ("handgrad", "handgrad.cli")


def is_command_line() -> bool:
    """True when the running program is the handgrad command line."""
    argv = list(getattr(sys, "orig_argv", None) or [])
    if "-m" in argv:
        i = argv.index("-m")
        return i + 1 < len(argv) and argv[i + 1] in CLI_MODULES
    return bool(sys.argv) and os.path.basename(sys.argv[0] or "") == "handgrad"


def _interrupted(signum, frame):
    os.write(2, b"handgrad: interrupted\n")
    os._exit(130)


def install() -> None:
    if is_command_line() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)


install()
