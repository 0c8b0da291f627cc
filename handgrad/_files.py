"""Files: read untrusted ones within limits, write atomically, and never over a user's file.

Reading (every file handgrad reads: case, candidate and model files, CSV series):

- Only regular files are read. A device (`/dev/zero`), a FIFO, a socket or a folder is refused
  at once (opened non-blocking, so a FIFO never hangs), and a file larger than the limit is
  refused from its size before a byte is read.
- `read_npz` is the one reader of `.npz` archives in handgrad (no `np.load`, no second copy of
  zip handling). Before decompressing anything it checks the archive's central directory: at most
  MAX_MEMBERS members, each named `<name>.npy` with `<name>` among the names the caller expects,
  stored or deflated (what `np.savez` and `np.savez_compressed` write; bzip2 and lzma, whose
  ratios reach a million to one, are refused), not encrypted, and the declared uncompressed sizes
  within the limit, each and in total. Then, member by member, it reads the `.npy` header from
  the stream and checks that the array it declares (no object or structured dtype) is exactly the
  member's declared size before allocating it; the data are read into that array, so the
  decompressed bytes can never exceed what was declared (`zipfile` stops at the declared size
  and checks the CRC).
- The limit, MAX_FILE_BYTES (256 MiB), bounds a file's size on disk and the total decompressed
  size of an archive. Raise it with the environment variable HANDGRAD_MAX_FILE_MB (mebibytes) or
  `handgrad --max-file-mb N COMMAND ...`. CSV text has the same limit (it is parsed row by row
  into float64, at most its own size in memory); JSON text an eighth of it (32 MiB), because
  parsed JSON takes up to 8 times its text in memory.

Writing:

- `write_atomic` writes to a temporary file in the same folder, fsyncs it and renames it into
  place, so a crash never leaves a half-written file; with `exclusive=True` the final step is a
  hard link that fails if the name exists, so two writers cannot both succeed.
- `RunFolder` is for commands that write several files (`train`, `truncation`): the files are
  built in a hidden folder beside the output, fsynced, and published with one rename, so the
  output folder appears whole or not at all. The output name is claimed at the start with a lock
  (flock, released by the kernel when the process dies), so a second run into the same folder
  is refused at once, as it would be after the first finished. A run interrupted by Ctrl-C
  removes what it built; one killed outright leaves a hidden `.NAME.partial-*` folder that the
  next run into the same output removes.
- `refuse_existing` is what every command calls before it computes anything: an output that
  already exists (a dangling symbolic link included) is an error (exit status 2) unless `--force`.
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import io
import math
import os
import shutil
import stat
import struct
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

MAX_FILE_BYTES = 256 * 2**20       # default limit: file size on disk, decompressed .npz total
MAX_MEMBERS = 64                   # members of an .npz archive (handgrad's files hold at most 15)
MAX_DIRECTORY_BYTES = 2**20        # size of an .npz archive's central directory
ENV_LIMIT = "HANDGRAD_MAX_FILE_MB"
JSON_EXPANSION = 8                 # memory per byte of JSON text, at worst ("0.0," -> 32 bytes)
_CHUNK = 2**20                     # bytes per read when streaming an array
MAX_NPY_HEADER = 10000             # bytes of a .npy header (numpy's own limit)
_NPY_KINDS = "biufcU"              # bool, integers, floats, complex, unicode text (spec, meta)


_override: list = []               # limits set by `handgrad --max-file-mb` (innermost last)
INTERRUPTED = threading.Event()    # set by the CLI's Ctrl-C handler: never publish after it


@contextlib.contextmanager
def file_limit(mb):
    """Within the block, the file limit is `mb` mebibytes (None: unchanged)."""
    if mb is None:
        yield
        return
    if not (mb > 0 and math.isfinite(mb)):
        raise ValueError(f"--max-file-mb must be a positive number, got {mb!r}")
    _override.append(int(mb * 2**20))
    try:
        yield
    finally:
        _override.pop()


def max_file_bytes() -> int:
    """The current limit in bytes: `--max-file-mb`, else HANDGRAD_MAX_FILE_MB (mebibytes), else
    MAX_FILE_BYTES."""
    if _override:
        return _override[-1]
    text = os.environ.get(ENV_LIMIT)
    if text is None or not text.strip():
        return MAX_FILE_BYTES
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (mb > 0 and math.isfinite(mb)):
        raise ValueError(f"{ENV_LIMIT} must be a positive number of mebibytes, got {text!r}")
    return int(mb * 2**20)


def max_json_bytes() -> int:
    """The limit for JSON text: an eighth of the file limit, because parsed JSON numbers take
    up to 8 times their text in memory (a Python float and a list slot for "0.0,")."""
    return max_file_bytes() // JSON_EXPANSION


def _limit_hint() -> str:
    return f"raise the limit with --max-file-mb N or {ENV_LIMIT}=N"


# ---------------------------------------------------------------- reading


def open_regular(path, limit: int | None = None):
    """Open `path` for binary reading if it is a regular file of at most `limit` bytes.

    A FIFO is opened non-blocking (no hang) and refused like any non-regular file. ValueError
    names the file and what is wrong; the caller closes the returned file.
    """
    limit = max_file_bytes() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file ({_kind(info.st_mode)}); "
                             "handgrad reads regular files only")
        if info.st_size > limit:
            raise ValueError(f"{path}: file is {info.st_size} bytes, more than the limit of "
                             f"{limit} ({_limit_hint()})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_capped(path, limit: int | None = None) -> bytes:
    """The bytes of the regular file `path`, refused if it holds more than `limit` bytes (even
    if it grew after it was opened)."""
    limit = max_file_bytes() if limit is None else limit
    with open_regular(path, limit) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ValueError(f"{path}: file holds more than the limit of {limit} bytes "
                         f"({_limit_hint()})")
    return data


def read_npz(path, names, limit: int | None = None) -> dict:
    """{name: np.ndarray} of the `.npz` archive `path`, every member checked before it is read.

    names: the member names (without `.npy`) the caller accepts; any other name is refused
    before anything is decompressed. Raises ValueError with one line naming the file.
    """
    limit = max_file_bytes() if limit is None else limit
    with open_regular(path, limit) as fh:
        _check_directory(path, fh)
        try:
            zf = zipfile.ZipFile(fh)
            members = zf.infolist()
        except Exception as exc:  # noqa: BLE001 - untrusted bytes: any failure is "not an npz"
            raise ValueError(f"{path}: not a valid .npz file ({_first_line(exc)})") from None
        _check_members(path, members, names, limit)
        with zf:
            return {info.filename[:-4]: _read_member(path, zf, info) for info in members}


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_directory(path, fh) -> None:
    """Refuse an archive whose central directory is larger than MAX_DIRECTORY_BYTES or claims
    more than MAX_MEMBERS members, before `zipfile` parses it (reads the end record only)."""
    size = fh.seek(0, io.SEEK_END)
    tail_len = min(size, 22 + 65535)                 # end record + the longest comment
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ValueError(f"{path}: not a valid .npz file (no zip end record)")
    entries, dir_bytes = struct.unpack("<xxxxxxxxxxHI", tail[at:at + 16])
    if entries == 0xFFFF or dir_bytes == 0xFFFFFFFF:
        raise ValueError(f"{path}: ZIP64 archives with that many members are not supported")
    if entries > MAX_MEMBERS or dir_bytes > MAX_DIRECTORY_BYTES:
        raise ValueError(f"{path}: the archive lists {entries} members in {dir_bytes} bytes; "
                         f"at most {MAX_MEMBERS} are allowed")
    fh.seek(0)


def _check_members(path, members, names, limit: int) -> None:
    """Names, compression and declared sizes of every member, before any is decompressed."""
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{path}: the archive has {len(members)} members; at most "
                         f"{MAX_MEMBERS} are allowed")
    seen, unknown, total = set(), [], 0
    for info in members:
        name = info.filename
        stem = name[:-4] if name.endswith(".npy") else None
        if stem is None or stem in seen:
            raise ValueError(f"{path}: unexpected member {name!r} in .npz file "
                             "(expected one NAME.npy per array)")
        seen.add(stem)
        if stem not in names:
            unknown.append(stem)
    if unknown:
        raise ValueError(f"{path}: unknown name(s) {sorted(unknown)} in the .npz file "
                         f"(allowed: {', '.join(sorted(names))})")
    for info in members:
        if info.flag_bits & 0x1:
            raise ValueError(f"{path}: member {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{path}: member {info.filename!r} uses compression method "
                             f"{info.compress_type}; only stored and deflated members (as "
                             "numpy writes) are read")
        total += info.file_size
        if info.file_size > limit or total > limit:
            raise ValueError(f"{path}: the arrays declare {total} bytes uncompressed (member "
                             f"{info.filename!r}: {info.file_size}), more than the limit of "
                             f"{limit} ({_limit_hint()})")


def _read_member(path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member: header checked against the declared size, then streamed into place."""
    name = info.filename[:-4]
    try:
        with zf.open(info) as f:
            shape, fortran, dtype, header_bytes = _npy_header(f)
            count = math.prod(shape)
            need = header_bytes + count * dtype.itemsize
            if need != info.file_size:
                raise ValueError(f"header says {need} bytes, member holds {info.file_size}")
            arr = np.empty(count, dtype=dtype)
            _read_into(f, memoryview(arr).cast("B") if arr.nbytes else memoryview(b""))
            if f.read(1):
                raise ValueError("data after the array")
    except Exception as exc:  # noqa: BLE001 - untrusted bytes
        msg = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: array {name!r} is unreadable ({msg})") from None
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def _npy_header(f):
    """(shape, fortran_order, dtype, header length in bytes) of a .npy stream; reads the header
    only (at most MAX_NPY_HEADER bytes)."""
    prefix = _read_exactly(f, 8, "the .npy magic")
    if prefix[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy member (bad magic)")
    version = (prefix[6], prefix[7])
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version} is not supported")
    width = 2 if version == (1, 0) else 4
    size_bytes = _read_exactly(f, width, "the .npy header length")
    size = int.from_bytes(size_bytes, "little")
    if size > MAX_NPY_HEADER:
        raise ValueError(f".npy header of {size} bytes, more than {MAX_NPY_HEADER}")
    header = io.BytesIO(prefix + size_bytes + _read_exactly(f, size, "the .npy header"))
    np.lib.format.read_magic(header)
    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = reader(header)
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _NPY_KINDS:
        raise ValueError(f"dtype {dtype} is not allowed (numbers or text only)")
    return shape, fortran, dtype, 8 + width + size


def _read_exactly(f, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated in {what}")
    return data


def _read_into(f, view: memoryview) -> None:
    """Fill `view` from `f` in chunks; ValueError if the stream ends early."""
    done = 0
    while done < len(view):
        n = f.readinto(view[done:done + _CHUNK])
        if not n:
            raise ValueError(f"truncated: {done} of {len(view)} data bytes")
        done += n


# ---------------------------------------------------------------- writing single files


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, write, exclusive: bool = False) -> Path:
    """Call write(binary_file) on a temporary file next to `path`, fsync it, then move it to
    `path` (with the permissions a plain `open` would give: 0666 less the umask).

    exclusive: fail (ValueError) instead of replacing an existing `path`; the check and the
    creation are one step (a hard link), so of two concurrent writers only one succeeds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ValueError(f"{path} already exists: not overwriting it (use --force, "
                                 "or choose another output)") from None
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes_atomic(path, data: bytes, exclusive: bool = False) -> Path:
    """`write_atomic` for bytes already in memory."""
    return write_atomic(path, lambda fh: fh.write(data), exclusive=exclusive)


def refuse_existing(paths, force: bool) -> None:
    """ValueError naming the first of `paths` that exists (a dangling link too), unless `force`."""
    if force:
        return
    for p in paths:
        if os.path.lexists(p):
            what = "is a dangling symbolic link" if not os.path.exists(p) else "already exists"
            raise ValueError(f"{p} {what}: not overwriting it (use --force, "
                             "or choose another output)")


def free_name(path) -> Path:
    """`path` if nothing has that name, else the first free NAME-2.EXT, NAME-3.EXT, ..."""
    path = Path(path)
    n = 1
    candidate = path
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


# ---------------------------------------------------------------- run folders


class FolderBusy(ValueError):
    """Another handgrad run is writing the output folder now."""


class RunFolder:
    """A folder of output files that appears whole or not at all.

        with RunFolder(out, ["model.npz", "plot.png"], force=False) as run:   # claims `out`
            ...                                           # compute (refused before this if taken)
            run.write_bytes("plot.png", data)
        # on leaving the block without an error: fsync, then one rename publishes `out`;
        # on an error or Ctrl-C: what was built is removed and `out` is as it was.

    `out` must be new, an empty folder, or (with force) a folder holding only files a handgrad
    run writes (`names` and the glob patterns `replaceable`), which is then replaced whole. A folder holding
    anything else is refused even with force: nothing a user has is ever lost.
    """

    def __init__(self, out, names, force: bool, replaceable=()):
        self.out = Path(out)
        self.names = list(names)
        self.force = force
        self.replaceable = set(names) | set(replaceable)
        self.stage = None
        self._lock_fd = None
        self._lock_path = None

    # -- claiming
    def __enter__(self):
        if self.stage is None:
            self.claim()
        return self

    def claim(self) -> "RunFolder":
        """Refuse now if the output is taken (ValueError; FolderBusy if another run holds it),
        else hold it until the block ends."""
        out = self.out
        if out.name in ("", ".", ".."):
            out = self.out = Path(os.path.abspath(out))
        parent = out.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not self.force:
            refuse_existing([out / n for n in self.names], False)
        self._check_target()
        self._lock_path = parent / f".{out.name}.handgrad-lock"
        self._lock()
        try:
            self._check_target()                   # again: another run may have finished
            self._remove_stale()
            self.stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
        except BaseException:
            self._unlock()
            raise
        return self

    def _check_target(self) -> None:
        out = self.out
        if os.path.islink(out) and not os.path.exists(out):
            if not self.force:
                raise ValueError(f"{out} is a dangling symbolic link: not replacing it "
                                 "(use --force, or choose another output)")
            return
        if not os.path.lexists(out):
            return
        if not os.path.isdir(out):
            raise ValueError(f"{out} exists and is not a folder: not replacing it "
                             "(choose another output)")
        present = sorted(os.listdir(out))
        foreign = [n for n in present
                   if not any(fnmatch.fnmatchcase(n, pattern) for pattern in self.replaceable)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ValueError(f"{out} already holds files that this command does not write "
                             f"({shown}): a run writes a new folder whole; choose a new or "
                             "empty one")
        if present and not self.force:
            raise ValueError(f"{out / present[0]} already exists: not overwriting it "
                             "(use --force, or choose another output)")

    def _lock(self) -> None:
        """Hold an exclusive flock on the lock file beside the output (never waits). The
        kernel drops it when the process dies, so a killed run never blocks the next one."""
        import fcntl
        for _ in range(10):
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise FolderBusy(f"{self.out}: another handgrad run is writing this folder "
                                     "now; wait for it or choose another output") from None
                raise
            try:
                same = os.stat(self._lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:                    # not a lock file its previous holder already removed
                self._lock_fd = fd
                return
            os.close(fd)
        raise ValueError(f"{self.out}: could not lock {self._lock_path}")

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.unlink(self._lock_path)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def _remove_stale(self) -> None:
        """Hidden folders left by a run of this output that was killed (we hold the lock)."""
        prefix = f".{self.out.name}.partial-"
        for entry in os.scandir(self.out.parent):
            if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)

    # -- writing
    def path(self, name: str) -> Path:
        """Where to write `name` while the run is being built."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of this run's files {self.names}")
        return self.stage / name

    def write(self, name: str, write) -> Path:
        """Call write(binary_file) for the file `name`; returns its final path."""
        with open(self.path(name), "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        return self.out / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self.write(name, lambda fh: fh.write(data))

    # -- publishing
    def __exit__(self, kind, exc, tb):
        try:
            if kind is None:
                if INTERRUPTED.is_set():             # a Ctrl-C that something swallowed
                    raise KeyboardInterrupt
                self._publish()
        finally:
            if self.stage is not None and os.path.lexists(self.stage):
                shutil.rmtree(self.stage, ignore_errors=True)
            self._unlock()
        return False

    def _publish(self) -> None:
        out, stage = self.out, self.stage
        os.chmod(stage, 0o777 & ~_umask())
        _fsync_dir(stage)
        self._check_target()
        if os.path.islink(out):                      # dangling, and force was given
            os.unlink(out)
        if os.path.isdir(out) and os.listdir(out):   # a previous run, and force was given
            _exchange(stage, out)                    # stage now holds the old run: removed
        else:
            os.rename(stage, out)                    # replaces an empty folder atomically
        _fsync_dir(out.parent)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE); elsewhere two renames."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
    old = Path(tempfile.mkdtemp(prefix=f".{b.name}.old-", dir=b.parent))
    os.rename(b, old / b.name)
    os.rename(a, b)
    os.rename(old / b.name, a)
    os.rmdir(old)
