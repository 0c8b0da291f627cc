"""Argument checks shared by `check`, `identify`, `replay` and the adapters: every error is a
ValueError that names the argument, what was expected and what was given."""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Optional


def check_candidate(candidate):
    if not callable(candidate):
        raise ValueError(f"candidate must be callable, got {type(candidate).__name__}")
    return candidate


def check_rtol(rtol) -> Optional[float]:
    """None (by the candidate's dtype) or a number in (0, 1)."""
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be a number in (0, 1) or None, got {rtol!r}")
    return float(rtol)


def check_count(name: str, value, lowest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    return int(value)


def check_timeout(timeout) -> Optional[float]:
    """A number of seconds > 0, or None (no limit)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not (
            math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return float(timeout)


def check_save_dir(save_dir) -> Optional[Path]:
    """None, or a directory that exists or can be made, and can be written to. Checked before
    any work, so that a replay file cannot fail to be written after a long search."""
    if save_dir is None:
        return None
    if not isinstance(save_dir, (str, os.PathLike)) or not os.fspath(save_dir):
        raise ValueError(f"save_dir must be a directory path or None, got {save_dir!r}")
    path = Path(save_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"save_dir must be a directory, got {str(path)!r}, which is a file")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"save_dir {str(path)!r} cannot be made: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"save_dir {str(path)!r} is not writable ({str(existing)!r} is not)")
    return path


def check_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name} must be a path (str or os.PathLike), got {value!r}")
    return Path(value)


def check_sizes(sizes) -> Optional[tuple]:
    """None, or (B, T, D, H, O): five integers >= 1."""
    if sizes is None:
        return None
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) != 5:
        raise ValueError(f"sizes must be (B, T, D, H, O), five integers >= 1, got {sizes!r}")
    return tuple(check_count(f"sizes {letter}", v) for letter, v in zip("BTDHO", sizes))
