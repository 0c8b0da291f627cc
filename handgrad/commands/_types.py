"""argparse `type=` converters shared by the commands: each raises ArgumentTypeError with what
was expected and what was given, which argparse turns into one line and exit status 2."""
from __future__ import annotations

import argparse
import math


def int_at_least(lowest: int):
    """An integer >= `lowest`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lowest:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {text!r}")
        return value
    return parse


def float_between(low: float, high: float = math.inf, what: str = ""):
    """A finite number in the open interval (low, high)."""
    wanted = what or (f"a number > {low:g}" if high == math.inf else f"a number in ({low:g}, {high:g})")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (low < value < high and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


def checked_names(names, check, what: str) -> tuple:
    """`names` (already split), each accepted by `check` (which raises ValueError naming what
    is wrong), as a tuple; ArgumentTypeError otherwise, or when there are none."""
    try:
        for name in names:
            check(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}")
    return tuple(names)
