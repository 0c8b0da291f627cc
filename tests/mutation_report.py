"""Which property tests of the ci profile kill each catalogued mistake: docs/mutation-report.md.

    python tests/mutation_report.py            # every mutant of tests/mutants.py (several minutes)
    python tests/mutation_report.py --only "relu'(0) = 1"

For each mutant the property suite (PROPERTY_FILES) runs in a fresh pytest process with the
mistake installed (HANDGRAD_MUTANT, tests/conftest.py) under the "mutation" profile: the ci
profile's examples without the shrink phase, so the verdicts are the ci profile's. A test that
fails kills the mutant; each test belongs to one independent method (JAX autodiff, the complex
step, central differences, or the laws of truncation and batching, which compare the hand
gradient with itself on related problems). tests/test_mutations.py requires at least two methods
per mutant and a report made from the current source.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
REPORT = ROOT / "docs" / "mutation-report.md"

# test file -> method; in test_numdiff.py the method is told by the test's name
PROPERTY_FILES = {
    "test_reference.py": "JAX",
    "test_numdiff.py": None,
    "test_truncation_laws.py": "laws",
    "test_metamorphic.py": "laws",
}
NUMDIFF_METHOD = {"complex_step": "complex step", "central": "central differences",
                  "directional": "complex step"}


def method_of(file: str, test: str) -> str:
    method = PROPERTY_FILES[file]
    if method is None:
        method = next((m for key, m in NUMDIFF_METHOD.items() if key in test), "other")
    return method


def run_suite(mutant: str | None) -> tuple[list[str], float]:
    """The failing property tests with `mutant` installed (None: no mutant)."""
    env = dict(os.environ, HANDGRAD_PROFILE="mutation")
    env.pop("HANDGRAD_MUTANT", None)
    if mutant is not None:
        env["HANDGRAD_MUTANT"] = mutant
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *(str(HERE / f) for f in PROPERTY_FILES)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        failed = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                file = case.get("classname").split(".")[-1] + ".py"
                failed.append(f"{file}::{case.get('name')}")
    return failed, seconds


def render(results: dict, digest: str, baseline_seconds: float) -> str:
    from mutants import MUTANTS
    lines = [
        "# Mutation report: which property tests kill each catalogued mistake",
        "",
        "Made by `python tests/mutation_report.py` (do not edit by hand). Each mistake of",
        "`tests/mutants.py` was installed into handgrad and the property suite",
        f"({', '.join(f'`tests/{f}`' for f in PROPERTY_FILES)}) run with the ci profile's examples",
        "(no shrinking). A mutant must be killed by at least two independent methods;",
        "`tests/test_mutations.py` checks this report against the current source.",
        "",
        f"Unmutated suite: no failure ({baseline_seconds:.0f} s).",
        "",
        "| mutant | mistake | methods | killing tests |",
        "|---|---|---|---|",
    ]
    for name, entry in results.items():
        tests = "<br>".join(f"`{t}`" for t in entry["tests"]) or "none"
        lines.append(f"| {name} | {MUTANTS[name].what} | {', '.join(entry['methods']) or 'none'} "
                     f"| {tests} |")
    data = {"digest": digest, "mutants": results}
    lines += ["", f"<!-- data {json.dumps(data)} -->", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    from mutants import MUTANTS
    from test_mutations import source_digest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable); "
                        "the report is then printed, not written")
    args = parser.parse_args(argv)
    names = args.only or list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}")
    baseline, seconds = run_suite(None)
    if baseline:
        print(f"the unmutated property suite fails: {baseline}", file=sys.stderr)
        return 1
    results = {}
    for name in names:
        failed, took = run_suite(name)
        methods = sorted({method_of(*t.split("::", 1)) for t in failed})
        results[name] = {"methods": methods, "tests": failed}
        print(f"{name}: {', '.join(methods) or 'SURVIVES'} ({len(failed)} tests, {took:.0f} s)",
              flush=True)
    text = render(results, source_digest(), seconds)
    if args.only:
        print(text)
    else:
        REPORT.write_text(text)
        print(f"wrote {REPORT}")
    return 0 if all(len(r["methods"]) >= 2 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
