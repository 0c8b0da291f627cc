"""Results: sections of rows, targets met or not, the machine, a text table and a JSON file."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Optional

import numpy as np


class Target(NamedTuple):
    name: str              # what is compared, e.g. "handgrad/jax, large, full"
    value: Optional[float]  # the measured ratio (None: not measured)
    op: str                # "<=" or ">="
    bound: float
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        if self.value is None:
            return None
        return self.value <= self.bound if self.op == "<=" else self.value >= self.bound

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "target": f"{self.op} {self.bound:g}",
                "met": self.met, "note": self.note}


class Section(NamedTuple):
    name: str
    columns: list          # column keys of `rows`, in print order
    rows: list             # list of dicts
    targets: list          # list of Target
    notes: list            # free-text lines printed under the table

    def as_dict(self) -> dict:
        return {"columns": self.columns, "rows": self.rows, "notes": self.notes,
                "targets": [t.as_dict() for t in self.targets]}


def skipped(name: str, reason: str) -> Section:
    return Section(name, [], [], [], [f"skipped: {reason}"])


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0:
            return "0"
        a = abs(value)
        return f"{value:.2e}" if a < 1e-3 or a >= 1e5 else f"{value:.3g}"
    return str(value)


def table(columns: list, rows: list) -> str:
    """A plain fixed-width text table (also valid Markdown)."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(items):
        return "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)


def target_rows(targets: list) -> list:
    return [{"ratio": t.name, "measured": t.value, "target": f"{t.op} {t.bound:g}",
             "met": {True: "met", False: "NOT met", None: "not measured"}[t.met], "note": t.note}
            for t in targets]


def render(sections: list) -> str:
    parts = []
    for s in sections:
        parts.append(f"## {s.name}\n")
        if s.rows:
            parts.append(table(s.columns, s.rows) + "\n")
        parts.extend(f"- {n}" for n in s.notes)
        parts.append("")
    targets = [t for s in sections for t in s.targets]
    if targets:
        parts.append("## targets\n")
        parts.append(table(["ratio", "measured", "target", "met", "note"], target_rows(targets)))
    return "\n".join(parts)


def from_dict(name: str, data: dict) -> Section:
    """A Section back from its JSON form (`Section.as_dict`)."""
    targets = []
    for t in data["targets"]:
        op, bound = t["target"].split()
        targets.append(Target(t["name"], t["value"], op, float(bound), t.get("note", "")))
    return Section(name, data["columns"], data["rows"], targets, data["notes"])


def describe(info: dict) -> str:
    """One line on what the numbers came from."""
    libs = ", ".join(f"{k} {info[k]}" for k in ("numpy", "jax", "torch") if k in info)
    dirty = " + uncommitted handgrad changes" if info.get("handgrad_uncommitted_changes") else ""
    load = info.get("loadavg_start", [float("nan")])[0]
    return (f"{info.get('cpu')}, {info.get('cores')} cores; BLAS {info.get('blas')}; "
            f"Python {info.get('python')}; {libs}; threads {info.get('threads')}, clock "
            f"{info.get('clock')}; commit {info.get('commit')}{dirty}; "
            f"load average {load:.1f} at the start; {info.get('utc')}")


def render_file(path: str) -> str:
    """The tables of a results JSON file, with its machine line (for the README)."""
    with open(path) as f:
        payload = json.load(f)
    sections = [from_dict(n, d) for n, d in payload["sections"].items()]
    return f"Machine: {describe(payload['machine'])}\n\n" + render(sections)


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older numpy without mode="dicts"
        return "unknown"


def code_version() -> dict:
    """The commit measured, and whether handgrad/ had uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "handgrad"], cwd=root,
                               timeout=10, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown"}
    return {"commit": head or "unknown", "handgrad_uncommitted_changes": bool(dirty)}


def machine() -> dict:
    """What the numbers came from: CPU, cores, BLAS, library versions, load."""
    info = {"cpu": _lscpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": _blas(), "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()),
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **code_version()}
    for mod in ("jax", "torch"):
        if mod in sys.modules:
            info[mod] = sys.modules[mod].__version__
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def write_json(path: str, payload: dict) -> None:
    """Atomic: a temporary file in the same folder, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(payload), f, indent=1, allow_nan=False, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _clean(value):
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
