"""Writing files: atomically, and never over a user's file unless they said so.

`write_atomic` writes to a temporary file in the same folder and renames it into place, so a
crash never leaves a half-written file. `refuse_existing` is what every command calls before it
computes anything: an output that already exists is an error (exit status 2) unless `--force`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write) -> Path:
    """Call write(binary_file) on a temporary file next to `path`, then rename it over `path`
    (with the permissions a plain `open` would give: 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes_atomic(path, data: bytes) -> Path:
    """`write_atomic` for bytes already in memory."""
    return write_atomic(path, lambda fh: fh.write(data))


def refuse_existing(paths, force: bool) -> None:
    """ValueError naming the first of `paths` that exists, unless `force`."""
    if force:
        return
    for p in paths:
        if os.path.exists(p):
            raise ValueError(f"{p} already exists: not overwriting it (use --force, "
                             "or choose another output)")
