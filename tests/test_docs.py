"""Every code block of README.md and docs/*.md runs as written, so the docs cannot drift.

A fenced block's language decides what happens to it:

  ```python           written to a file and run in a fresh interpreter, in a fresh temporary
                      folder; the block carries its own imports; it must exit 0.
  ```console          the lines starting with "$ " are commands (a command ending in "\\"
                      continues on the next line); the other lines are their output, not
                      compared, except a line "exit N" after a command ending in
                      `echo "exit $?"`: the command must really end with status N.
  ```sh               every line is a command (a line ending in "\\" continues), "#" comments.
  ```text, json, cpp, c, toml
                      output, file contents or other languages: never run.

A block with no language is an error (say what it is). The commands of a block run in order,
through bash, in one temporary folder that holds links to the repository's handgrad/,
reference/, examples/, benchmarks/, tests/ and pyproject.toml (so `examples/rnn_candidate.c` and
`handgrad/data/sunspots.csv` resolve as in a clone); each must exit 0. `handgrad` and `python`
are this interpreter, with this worktree's handgrad.

An HTML comment on the line right before a block marks it:

  <!-- slow: REASON -->          run only under HANDGRAD_PROFILE=thorough (a long run);
  <!-- not run: REASON -->       never run: only for blocks of install lines (`pip install`,
                                 `git clone`, `cd`: .ci/run exercises them), the test suite itself
                                 (`python -m pytest`) and `python tests/mutation_report.py` (it
                                 rewrites a committed file; tests/test_mutations.py checks it).

A block that imports torch, jax or reference follows tests/conftest.py's `need()`: skipped
outside CI when the package is missing, a failure in CI. A block that calls a C compiler is
skipped when there is none (as tests/test_exec.py).

To see what a block prints (to refresh the output shown after it):

    python tests/test_docs.py README.md:42        # the block whose fence opens on line 42
    python tests/test_docs.py docs/oracle.md      # every block of a page, in order (slow ones
                                                  # only under HANDGRAD_PROFILE=thorough)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

from conftest import need

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("python", "console", "sh")
NOT_RUN = ("text", "json", "cpp", "c", "toml")
LINKED = ("handgrad", "reference", "examples", "benchmarks", "tests", "pyproject.toml")
TIMEOUT = 300.0          # seconds per block (a slow block: SLOW_TIMEOUT)
SLOW_TIMEOUT = 1800.0
OPTIONAL = ("torch", "jax", "reference")
# what a "not run" block may hold: install lines (.ci/run exercises them), the test suite itself
# (it is what runs these blocks), and the mutation report's regeneration (it rewrites a committed
# file; tests/test_mutations.py checks the result)
NOT_RUN_LINE = re.compile(r"^(pip3? install|python3? -m pip install|git clone|cd\b"
                          r"|python3? -m pytest|python3? tests/mutation_report\.py)")
MARKER = re.compile(r"^<!--\s*(slow|not run)\s*:\s*(.*?)\s*-->\s*$")
FENCE_OPEN = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")


# Pages whose owners have not converted their blocks yet (bare fences, a python block that is a
# sketch): their blocks are reported as skipped with this reason instead of run. Remove a page's
# entry when its blocks are labelled and self-contained.
PENDING: dict = {}                    # page -> why its blocks cannot run yet (none now)


class Block(NamedTuple):
    page: Path
    line: int              # 1-based line of the opening fence
    lang: str
    text: str
    marker: Optional[str]  # "slow" | "not run" | None
    reason: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the marker comment right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{page.name}:{start + 1}: code block never closed")
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        out.append(Block(page, start + 1, m.group(1), "\n".join(body) + "\n",
                         marker.group(1) if marker else None, marker.group(2) if marker else ""))
        i += 1
    return out


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks_of(page)]


class Command(NamedTuple):
    text: str
    exit_shown: Optional[int]   # the "exit N" its output shows, when it ends in echo "exit $?"


def commands(block: Block) -> list[Command]:
    """The commands of a console or sh block, in order."""
    cmds, current, shown_for = [], None, None
    for raw in block.text.splitlines():
        if current is not None:                         # a continuation line
            current += "\n" + raw
            if not raw.rstrip().endswith("\\"):
                cmds.append(Command(current, None))
                current = None
            continue
        if block.lang == "console":
            if raw.startswith("$ "):
                line = raw[2:]
            else:                                       # output of the last command
                exit_line = re.fullmatch(r"exit (\d+)", raw.strip())
                if exit_line and cmds and shown_for == len(cmds) - 1:
                    cmds[-1] = cmds[-1]._replace(exit_shown=int(exit_line.group(1)))
                continue
        else:
            line = raw
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.rstrip().endswith("\\"):
            current = line
            continue
        cmds.append(Command(line, None))
        shown_for = len(cmds) - 1 if line.rstrip().endswith('echo "exit $?"') else None
    if current is not None:
        cmds.append(Command(current, None))
    return cmds


def needs(block: Block) -> list[str]:
    """The optional packages a block imports (torch, jax, reference)."""
    found = re.findall(r"^\s*(?:import|from)\s+(torch|jax|reference)\b", block.text, re.M)
    return sorted(set(found))


def workspace(tmp: Path) -> dict:
    """Links to the repository's folders, `handgrad` and `python` commands; the environment."""
    for name in LINKED:
        os.symlink(ROOT / name, tmp / name)
    bin_dir = tmp / ".docs-bin"
    bin_dir.mkdir()
    for name, target in (("handgrad", f'exec "{sys.executable}" -m handgrad "$@"'),
                         ("python", f'exec "{sys.executable}" "$@"'),
                         ("python3", f'exec "{sys.executable}" "$@"')):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{target}\n")
        path.chmod(0o755)
    env = dict(os.environ)
    env.pop("HANDGRAD_MUTANT", None)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    # one BLAS thread per block: the examples are small, and under pytest -n 2 two-thread BLAS
    # pools only wait for each other's cores (the results do not depend on it)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_block(block: Block, echo: bool = False) -> list[str]:
    """Run one block in a fresh folder; returns the failures (empty: it ran as written)."""
    timeout = SLOW_TIMEOUT if block.marker == "slow" else TIMEOUT
    failures = []
    with tempfile.TemporaryDirectory(prefix="handgrad-docs-") as tmp:
        tmp = Path(tmp)
        env = workspace(tmp)
        if block.lang == "python":
            (tmp / "block.py").write_text(block.text)
            steps = [([sys.executable, "block.py"], "the python block", None)]
        else:
            steps = [(["bash", "-c", c.text], c.text, c.exit_shown) for c in commands(block)]
        for argv, label, shown in steps:
            if echo and block.lang != "python":
                print(f"$ {label}", flush=True)
            r = subprocess.run(argv, cwd=tmp, env=env, capture_output=not echo, text=True,
                               timeout=timeout)
            if r.returncode != 0:
                shown_output = "" if echo else f"\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
                failures.append(f"{label!r} exited {r.returncode}{shown_output}")
                break
            if shown is not None and not echo and f"exit {shown}" not in r.stdout.splitlines():
                failures.append(f"{label!r}: the docs show 'exit {shown}', the command printed"
                                f"\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-2000:]}")
    return failures


def _skip_reason(block: Block) -> Optional[str]:
    pending = PENDING.get(str(block.page.relative_to(ROOT)))
    if pending:
        return f"page not converted yet: {pending}"
    if block.marker == "not run":
        return f"not run: {block.reason}"
    if block.marker == "slow" and os.environ.get("HANDGRAD_PROFILE") != "thorough":
        return f"slow ({block.reason}): runs under HANDGRAD_PROFILE=thorough"
    return None


BLOCKS = all_blocks()
EXECUTED = [b for b in BLOCKS if b.lang in RUN]


@pytest.mark.parametrize("block", EXECUTED, ids=[b.name for b in EXECUTED])
def test_block_runs_as_written(block):
    reason = _skip_reason(block)
    if reason:
        pytest.skip(reason)
    for module in needs(block):
        need(module)
    if block.lang != "python" and re.search(r"(^|[\s;&|(])(cc|gcc|clang) ", block.text):
        if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
            pytest.skip("no C compiler on this machine")
    failures = run_block(block)
    assert not failures, f"{block.name} does not run as written:\n" + "\n".join(failures)


def test_every_block_says_what_it_is():
    """No bare fences: each block is run (python, console, sh) or declared not code (text...)."""
    bad = [f"{b.name} ```{b.lang}" for b in BLOCKS if b.lang not in RUN + NOT_RUN
           and str(b.page.relative_to(ROOT)) not in PENDING]
    assert not bad, ("blocks without a known language (use python, console, sh to run it; "
                     f"text, json, cpp, c, toml for the rest): {bad}")


def test_markers_are_used_as_documented():
    for b in BLOCKS:
        if b.marker is None:
            continue
        assert b.lang in RUN, f"{b.name}: a marker on a block that is never run anyway"
        assert b.reason, f"{b.name}: a marker needs its reason"
        if b.marker == "not run":
            lines = [c.text for c in commands(b)]
            assert lines and all(NOT_RUN_LINE.match(c) for c in lines), (
                f"{b.name}: 'not run' is for install lines, the test suite and the mutation "
                f"report only, got {lines}")


def test_pending_pages_exist():
    """An exemption for a page that is gone (or renamed) would hide nothing: drop it."""
    missing = [page for page in PENDING if not (ROOT / page).exists()]
    assert not missing, f"PENDING names pages that do not exist: {missing}"


def test_console_blocks_have_commands():
    """A console block whose commands were all lost (a missing "$ ") would pass silently."""
    empty = [b.name for b in BLOCKS if b.lang in ("console", "sh") and not commands(b)]
    assert not empty, f"console/sh blocks without a command: {empty}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_links_between_pages_resolve():
    """Every relative link and image of the docs points at a file that exists, and every
    #anchor at a heading of that page."""
    broken = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):                  # https:, mailto:
                continue
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in anchors_of(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_parser_reads_commands_and_exit_lines():
    page = ROOT / "README.md"
    block = Block(page, 1, "console", textwrap.dedent("""\
        $ handgrad case --out case.json \\
            -T 4
        wrote case.json
        $ handgrad compare case.json case.json; echo "exit $?"
        handgrad compare: error: ...
        exit 2
        """), None, "")
    assert commands(block) == [Command("handgrad case --out case.json \\\n    -T 4", None),
                               Command('handgrad compare case.json case.json; echo "exit $?"',
                                       2)]
    sh = Block(page, 1, "sh", "# a comment\nhandgrad train --epochs 2   # short\n\n", None, "")
    assert commands(sh) == [Command("handgrad train --epochs 2   # short", None)]


def _children_cpu() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    """Print what the chosen blocks print (to refresh the output shown after them)."""
    if not argv:
        print(__doc__.split("To see")[0])
        return 2
    status = 0
    for arg in argv:
        path, _, line = arg.partition(":")
        chosen = [b for b in blocks_of(ROOT / path) if b.lang in RUN
                  and (not line or b.line == int(line))]
        if not chosen:
            print(f"no runnable block at {arg}", file=sys.stderr)
            return 2
        for b in chosen:
            reason = _skip_reason(b)
            if reason and not (line and b.marker == "slow"):   # a slow block named by its line runs
                print(f"===== {b.name}: skipped, {reason}", flush=True)
                continue
            print(f"===== {b.name} ({b.lang}{', ' + b.marker if b.marker else ''})", flush=True)
            start, cpu = time.perf_counter(), _children_cpu()
            failures = run_block(b, echo=True)
            print(f"===== {b.name}: {'FAILED' if failures else 'ok'} in "
                  f"{time.perf_counter() - start:.1f} s ({_children_cpu() - cpu:.1f} s of CPU)",
                  flush=True)
            for f in failures:
                print(f, file=sys.stderr)
            status |= bool(failures)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
