"""`handgrad forecast` through the command line: rolling a model forward on its own predictions."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
US_MACRO = os.path.join(REPO, "handgrad", "data", "us_macro.csv")


def handgrad(*args):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    assert handgrad("train", "--epochs", "2", "--quiet", "--out", d / "sine").returncode == 0
    r = handgrad("train", "--csv", US_MACRO, "--columns", "unemp,infl", "--target", "unemp",
                 "--window", "4", "--epochs", "1", "--hidden", "6", "--quiet", "--out", d / "macro")
    assert r.returncode == 0, r.stderr
    return d


def test_forecast_bad_model_in_a_real_process(models):
    r = handgrad("forecast", models / "sine" / "metrics.json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "not a handgrad model" in r.stderr and "Traceback" not in r.stderr


def _rows(out):
    return re.findall(r"^(\d+)\s+(-?[\d.e+-]+)\s*(-?[\d.e+-]+)?$", out, re.M)


def test_forecast_prints_values_against_the_truth_and_plots(models):
    r = handgrad("forecast", models / "sine" / "model.npz", "--steps", "12")
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    assert [int(x[0]) for x in rows] == list(range(150, 162))   # the validation rows
    for row, _, truth in rows:
        assert float(truth) == pytest.approx(np.sin(int(row)), abs=5e-6)
    assert "RMSE against the truth over 12 known step(s)" in r.stdout
    png = models / "sine" / "forecast.png"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_forecast_past_the_end_of_the_data(models, tmp_path):
    plot = tmp_path / "f.png"
    r = handgrad("forecast", models / "sine" / "model.npz", "--steps", "5", "--start", "end",
                 "--plot", plot)
    assert r.returncode == 0, r.stderr
    assert [int(x[0]) for x in _rows(r.stdout)] == list(range(200, 205))
    assert plot.exists()
    # a CSV model: no truth after the last row
    r = handgrad("forecast", models / "macro" / "model.npz", "--steps", "3", "--start", "200",
                 "--plot", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert "known step(s)" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["{m}/macro/model.npz", "--start", "end", "--steps", "3"], "does not predict"),
    (["{m}/sine/model.npz", "--steps", "0"], "--steps"),
    (["{m}/sine/model.npz", "--start", "3"], "start"),
    (["{m}/sine/model.npz", "--start", "x"], "--start"),
    (["{m}/missing.npz"], "not a file"),
    (["{m}/garbage.npz"], "not a handgrad model"),
    (["{m}/sine/metrics.json"], "not a handgrad model"),
])
def test_forecast_bad_input_exits_2_with_one_line(models, capsys, args, needle):
    """In this process (the same entry point, no interpreter start per case)."""
    from handgrad.cli import main
    (models / "garbage.npz").write_bytes(b"PK\x03\x04 truncated zip")
    try:
        code = main(["forecast", *[a.replace("{m}", str(models)) for a in args]])
    except SystemExit as exc:                 # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    r = subprocess.CompletedProcess(args, code, out, err)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and needle in lines[0], r.stderr
