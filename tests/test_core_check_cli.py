"""`handgrad check`: the agreement table, exit 0 on agreement, 1 on any disagreement."""
import json
import subprocess
import sys

import handgrad as hg
from handgrad import checks, cli


def handgrad(*args):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_check_prints_the_agreement_table_and_exits_0():
    out = handgrad("check")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for word in ("JAX", "complex step", "central diff", "tolerance", "PASS", "Window(5)",
                 "Chunks(3)", "TBPTT(2, 4)", "full", "cross_entropy", "squared", "mean",
                 "no bias", "saturating", "tutorial", "given"):
        assert word in text, word
    rows = [line for line in text.splitlines() if line.endswith(("PASS", "FAIL"))]
    assert len(rows) == len(checks.check_specs()) and all(r.endswith("PASS") for r in rows)
    assert "FAIL" not in text and out.stderr == ""


def test_check_json_is_machine_readable():
    out = handgrad("check", "--quick", "--json", "--seed", "3")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["seed"] == 3 and data["methods"] == ["complex_step"]
    assert len(data["rows"]) == len(checks.check_specs())
    for row in data["rows"]:
        m = row["methods"]["complex_step"]
        assert m["ok"] and m["worst"] <= m["tolerance"] == 1e-12


def test_the_tour_covers_the_family():
    specs = [s for s, _, _ in checks.check_specs()]
    scales = {scale for _, scale, _ in checks.check_specs()}
    assert {s.activation for s in specs if s.cell == "elman"} == set(hg.spec.ACTIVATIONS)
    assert {(s.cell, s.gru_reset) for s in specs} == {("elman", "after"), ("gru", "after"),
                                                     ("gru", "before"), ("lstm", "after")}
    assert {s.bias for s in specs} == {True, False}
    assert {s.head for s in specs} == {True, False}
    assert {s.output for s in specs} == {"last", "all"}
    assert {s.loss for s in specs} == set(hg.spec.LOSSES)
    assert {s.reduction for s in specs} == set(hg.spec.REDUCTIONS)
    assert {type(s.truncation).__name__ for s in specs} == {"NoneType", "Window", "Chunks", "TBPTT"}
    assert scales == {"small", "moderate", "saturating", "tutorial"}
    assert {h0 for _, _, h0 in checks.check_specs()} == {True, False}


def test_check_exits_1_and_says_fail_when_a_gradient_is_wrong(monkeypatch, capsys):
    real = checks.hand

    def off_by_a_little(case, implementation=None):
        answer = real(case)
        rec = "W" if "W" in answer.grads._fields else "W_hh"       # W, or W_hh of a gated cell
        return answer._replace(grads=answer.grads._replace(
            **{rec: getattr(answer.grads, rec) * (1 + 1e-9)}))

    monkeypatch.setattr(checks, "hand", off_by_a_little)
    assert cli.main(["check", "--quick"]) == 1
    text = capsys.readouterr().out
    assert "FAIL" in text and "(W)" in text and "(W_hh)" in text
    assert f"FAIL: {len(checks.check_specs())} of {len(checks.check_specs())} specs disagree" in text


def test_check_without_jax_says_so(monkeypatch, capsys):
    monkeypatch.setattr(checks, "jax_available", lambda: False)
    monkeypatch.setattr(checks, "METHODS", ("jax", "complex_step"))   # keep it quick
    assert cli.main(["check"]) == 0
    text = capsys.readouterr().out
    assert "JAX: not installed, column skipped" in text and "complex step" in text


def test_bad_seed_is_a_usage_error(capsys):
    out = handgrad("check", "--seed", "minus")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert cli.main(["check", "--quick", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "-1" in err and len(err.strip().splitlines()) == 1
