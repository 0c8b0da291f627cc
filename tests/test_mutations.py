"""Teeth: the classic backward-pass mistakes of tests/mutants.py are caught, and shrunk.

Quick search (every run): with each mutant installed, Hypothesis searches the cases of the
mutant's family for one where the hand gradient disagrees with the complex step, and shrinks it
(the minimal cases are printed with -s). That proves each mistake is findable.

The stronger claim, that the suite's own property tests kill each mutant by at least two
independent methods, is measured by tests/mutation_report.py (it runs the property suite once per
mutant, several minutes) into docs/mutation-report.md; `test_the_report_is_current` checks that
the committed report covers the current catalogue, source, strategies and property tests, and
says so.
"""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import NoSuchExample

import handgrad as hg
from handgrad import checks
from handgrad.params import tree_leaves, tree_map
from handgrad.strategies import cases

from mutants import MUTANTS, installed, mutated_source
from mutation_report import PROPERTY_FILES

SEARCH = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
REPORT = Path(__file__).parent.parent / "docs" / "mutation-report.md"


def disagrees(case) -> bool:
    """The hand gradient against the complex step along one random direction through every
    array (parameters, h0, xs): one complex loss evaluation instead of one per element, so the
    search and the shrinking stay cheap; the minimal case is then judged element by element."""
    _, *got = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, case.h0, wrt_h0=True,
                                wrt_xs=True)
    rng = np.random.default_rng(case.seed)
    v = tree_map(lambda g: rng.normal(size=g.shape), got)           # [params, h0, xs]
    numeric = hg.directional_derivative(case.params, case.xs, case.ys, case.spec, v[0], case.h0,
                                        v[1], direction_xs=v[2])
    pairs = list(zip(tree_leaves(got), tree_leaves(v)))
    hand = sum(float(np.sum(g * d)) for g, d in pairs)
    scale = sum(float(np.sum(np.abs(g * d))) for g, d in pairs)
    return not abs(hand - numeric) <= hg.TOLERANCES["complex_step"] * scale


def describe(case) -> str:
    s = case.spec
    sizes = ", ".join(f"{k}={v}" for k, v in case.sizes.items())
    member = s.cell + (f" {s.activation}" if s.cell == "elman" else "") + \
        (f" reset {s.gru_reset}" if s.cell == "gru" else "")
    return (f"{sizes}; {member}, bias={s.bias}, head={s.head}, output={s.output}, {s.loss}, "
            f"{s.reduction}, truncation={s.truncation}, "
            f"h0={'given' if s is not None and case.h0 is not None else 'zero'}, "
            f"weights {case.scale!r}, zero steps {int((case.xs == 0).all(axis=(0, 2)).sum())}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_mutant_is_found_and_shrunk(name):
    mutant = MUTANTS[name]
    with installed(name):
        minimal = find(cases(spec=mutant.family), disagrees, settings=SEARCH)
        agr = checks.agreement(minimal, "complex_step")
    print(f"\nmutant {name!r} ({mutant.what}) killed; minimal case: {describe(minimal)}\n"
          f"  {checks.describe(agr)}")
    assert not agr.ok                      # and element by element, the complex step agrees


def test_installing_restores_everything():
    """The kills above are the mutations' doing: outside the context handgrad is itself again
    (the same objects everywhere), and it agrees with the complex step."""
    import handgrad
    import handgrad.bptt
    import handgrad.cells.elman
    before = (handgrad.bptt.backward, handgrad.cells.elman.Elman, handgrad.loss_and_grads,
              checks.loss_and_grads)
    for name in MUTANTS:
        with installed(name):
            pass
    assert (handgrad.bptt.backward, handgrad.cells.elman.Elman, handgrad.loss_and_grads,
            checks.loss_and_grads) == before
    with pytest.raises(NoSuchExample):
        find(cases(), disagrees, settings=settings(SEARCH, max_examples=40))


def source_digest() -> str:
    """A digest of what the report's verdicts depend on: every mutated module's source, the
    catalogue, the strategies that draw the cases and the property test files that judge them.
    The report must be regenerated when any of them changes."""
    digest = hashlib.sha256()
    for name in sorted(MUTANTS):
        digest.update(name.encode())
        digest.update(mutated_source(name).encode())
    here = Path(__file__).parent
    for path in [here.parent / "handgrad" / "strategies.py", here / "conftest.py",
                 *(here / f for f in sorted(PROPERTY_FILES))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def test_the_report_is_current():
    """docs/mutation-report.md lists every mutant with the property tests that kill it (at least
    two independent methods each) and was made from the current source."""
    text = REPORT.read_text()
    data = json.loads(re.search(r"<!-- data (.*?) -->", text, re.S).group(1))
    assert data["digest"] == source_digest(), (
        "docs/mutation-report.md is stale (a mutated module, the catalogue, the strategies or a "
        "property test changed): run `python tests/mutation_report.py`")
    assert sorted(data["mutants"]) == sorted(MUTANTS)
    for name, entry in data["mutants"].items():
        assert len(entry["methods"]) >= 2, f"{name}: killed by {entry['methods']} only"
