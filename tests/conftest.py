"""Hypothesis profiles, chosen by HANDGRAD_PROFILE (default: `ci` when CI is set, else `dev`).

  dev       quick local runs, random
  ci        derandomized (same cases every run), no deadline, no example database
  thorough  thousands of examples per property; run before a release
  mutation  ci without shrinking (tests/mutation_report.py)

HANDGRAD_MUTANT=<name> installs that mistake of tests/mutants.py for the whole session.
"""
import importlib
import os

import pytest
from hypothesis import HealthCheck, Phase, settings

_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=60, derandomize=True, database=None, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
# tests/mutation_report.py runs the property suite with one catalogued mistake installed
# (tests/mutants.py); "mutation" is the ci profile without the shrink phase: the same examples,
# the same verdicts, sooner.
settings.register_profile("mutation", settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HANDGRAD_PROFILE", _default))


def need(module_name: str):
    """Import an optional test dependency (jax, torch): outside CI a missing one skips the
    calling test module or test (`pytest.importorskip`); in CI (env CI set) it fails loudly with
    ImportError, so a broken CI image cannot turn the JAX or torch proofs into silent skips."""
    if os.environ.get("CI"):
        return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


if os.environ.get("HANDGRAD_MUTANT"):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from mutants import installed

    _MUTANT = installed(os.environ["HANDGRAD_MUTANT"])
    _MUTANT.__enter__()                  # for the whole session, in every xdist worker
