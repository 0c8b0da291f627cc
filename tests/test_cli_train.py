"""`handgrad train` through the command line, as a user runs it (subprocess)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from handgrad.train import load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUNSPOTS = os.path.join(REPO, "handgrad", "data", "sunspots.csv")
US_MACRO = os.path.join(REPO, "handgrad", "data", "us_macro.csv")


def handgrad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def handgrad_in_process(capsys, *args):
    """The same entry point in this process (for the many bad-input cases: no interpreter start).
    Returns a CompletedProcess-like result."""
    from handgrad.cli import main
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:               # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def one_line_error(r):
    """Exit 2, exactly one line on stderr, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def metrics(out):
    with open(os.path.join(out, "metrics.json")) as fh:
        return json.load(fh)


def test_default_run_learns_the_sine_task_and_writes_three_files(tmp_path):
    """The README's first command (without its --out), end to end with its defaults, into the
    default runs/ folder."""
    r = handgrad("train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (out,) = [os.path.join(tmp_path, "runs", d) for d in os.listdir(tmp_path / "runs")]
    m = metrics(out)
    assert m["val_rmse"] <= 0.03 and m["train_rmse"] <= 0.03
    assert m["epochs"] == 20 and m["seconds"] > 0 and m["diverged"] is None
    assert m["spec"]["truncation"] == {"kind": "Window", "k": 5}
    assert m["spec"]["activation"] == "sigmoid" and m["spec"]["bias"] is False
    assert m["data"]["inputs"] == "position" and m["data"]["train_windows"] == 100
    assert m["saturation_final"]["fraction"] < 0.5
    assert len(m["history"]) == 21
    model = load_model(os.path.join(out, "model.npz"))
    assert model.params.U.shape == (100, 50) and model.scaler.scale[0] == pytest.approx(1, abs=1e-4)
    with open(os.path.join(out, "plot.png"), "rb") as fh:
        png = fh.read()
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
    assert "val RMSE" in r.stdout and "max_val" in r.stdout
    assert "epoch" in r.stderr                              # the progress bar
    assert "SATURATION" not in r.stdout
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_same_seed_same_bits(tmp_path):
    """Two separate processes, same options and seed: identical weights (a different seed
    giving different weights is checked in test_train_unit.py)."""
    args = ["train", "--epochs", "1", "--hidden", "16", "--shuffle", "--seed", "3", "--quiet"]
    a, b = (handgrad(*args, "--out", tmp_path / n) for n in "ab")
    assert a.returncode == b.returncode == 0
    ma, mb = (load_model(str(tmp_path / n / "model.npz")) for n in "ab")
    for x, y in zip(ma.params[:3], mb.params[:3]):
        assert np.array_equal(x, y)
    assert metrics(tmp_path / "a")["val_rmse"] == metrics(tmp_path / "b")["val_rmse"]


def test_every_option_is_honoured(tmp_path):
    r = handgrad("train", "--epochs", "2", "--hidden", "12", "--activation", "tanh", "--bias",
                 "--init", "orthogonal", "--init-scale", "0.9", "--truncation", "tbptt:2,6",
                 "--lr", "0.01", "--optimizer", "adam", "--batch-size", "4", "--clip", "norm:1",
                 "--window", "20", "--val-fraction", "0.25", "--quiet", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    m = metrics(tmp_path)
    c = m["config"]
    assert (c["hidden"], c["activation"], c["bias"], c["init"], c["init_scale"]) == \
        (12, "tanh", True, "orthogonal", 0.9)
    assert c["truncation"] == {"kind": "TBPTT", "k1": 2, "k2": 6}
    assert (c["lr"], c["optimizer"], c["batch_size"], c["clip"]) == \
        (0.01, "adam", 4, {"kind": "norm", "limit": 1.0})
    assert m["data"]["window"] == 20 and m["data"]["val_windows"] == 45
    assert m["updates"] == 2 * 34                           # ceil(135 / 4) per epoch
    assert "epoch" not in r.stderr                          # --quiet: no progress bar


def test_faithful_run_detects_saturation_and_learns_a_constant(tmp_path):
    r = handgrad("train", "--faithful", "--quiet", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    m = metrics(tmp_path)
    assert m["config"]["init"] == "tutorial" and m["config"]["lr"] == 1e-4 and m["epochs"] == 25
    assert m["saturation_init"]["fraction"] > 0.9 and m["saturation_final"]["fraction"] > 0.9
    assert m["first_update_max_abs_grad"]["U"] < 1e-12 < 1 < m["first_update_max_abs_grad"]["V"]
    assert 0.6 < m["val_rmse"] < 0.8                        # a constant: about std(sin) = 0.71
    assert "SATURATION at initialisation" in r.stdout and "constant" in r.stdout
    assert "zero gradient" in r.stdout


def test_saturation_is_reported_in_any_run_where_it_happens(tmp_path):
    r = handgrad("train", "--init", "tutorial", "--epochs", "1", "--quiet", "--out", tmp_path)
    assert r.returncode == 0 and "SATURATION" in r.stdout


def test_diverging_run_stops_says_so_and_keeps_the_last_good_model(tmp_path):
    r = handgrad("train", "--lr", "1e6", "--clip", "none", "--epochs", "3", "--quiet",
                 "--out", tmp_path)
    assert r.returncode == 1
    assert "diverged" in r.stderr and "last good" in r.stderr and "Traceback" not in r.stderr
    assert "RuntimeWarning" not in r.stderr
    m = metrics(tmp_path)
    assert m["diverged"]["epoch"] == 1
    model = load_model(str(tmp_path / "model.npz"))
    assert all(np.all(np.isfinite(a)) for a in model.params[:3])


def test_csv_univariate_sunspots(tmp_path):
    r = handgrad("train", "--csv", SUNSPOTS, "--columns", "SUNACTIVITY", "--target", "SUNACTIVITY",
                 "--epochs", "3", "--hidden", "16", "--quiet", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    m = metrics(tmp_path)
    assert m["data"]["inputs"] == "steps" and m["data"]["columns"] == ["SUNACTIVITY"]
    n = m["data"]["train_windows"]
    assert n + m["data"]["val_windows"] == 309 - 20
    # scaling fitted on the training rows only: the tutorial's max_val, in the data's units
    import csv
    with open(SUNSPOTS) as fh:
        values = [float(row["SUNACTIVITY"]) for row in csv.DictReader(fh)]
    assert m["scale"]["SUNACTIVITY"] == max(values[:n + 20]) < max(values)
    assert np.isfinite(m["val_rmse"]) and m["val_rmse"] > 1      # data units: sunspot numbers


def test_csv_multivariate_reads_every_column(tmp_path):
    r = handgrad("train", "--csv", US_MACRO, "--columns", "unemp,infl,tbilrate", "--target",
                 "unemp", "--window", "4", "--epochs", "2", "--hidden", "8", "--quiet",
                 "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    model = load_model(str(tmp_path / "model.npz"))
    assert model.params.U.shape == (8, 3) and model.params.V.shape == (1, 8)
    assert model.series.columns == ("unemp", "infl", "tbilrate") and model.target_cols == (0,)


@pytest.fixture(scope="module")
def bad_csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    rows = [f"{i},{np.sin(i):.4f},{i % 5}" for i in range(40)]
    files = {
        "text": "t,a,b\n" + "\n".join(r if i != 7 else "7,oops,2" for i, r in enumerate(rows)),
        "nan": "t,a,b\n" + "\n".join(r if i != 9 else "9,nan,4" for i, r in enumerate(rows)),
        "const": "t,a,b\n" + "\n".join(f"{i},{np.sin(i):.4f},3" for i in range(40)),
        "ragged": "t,a,b\n" + "\n".join(r if i != 3 else "3,1" for i, r in enumerate(rows)),
        "empty": "",
        "header": "t,a,b\n",
    }
    for name, text in files.items():
        (d / f"{name}.csv").write_text(text)
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    return d


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "0"], "--epochs"),
    (["--hidden", "0"], "--hidden"),
    (["--lr", "-0.1"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--window", "500"], "too long"),
    (["--truncation", "window:-1"], "truncation"),
    (["--clip", "value:0"], "clip"),
    (["--no-such-option"], "unrecognized"),
    (["--activation", "softplus"], "activation"),
    (["--csv", "/no/such/file.csv"], "no/such/file.csv"),
    (["--columns", "a"], "--csv"),
    (["--csv", "{d}/text.csv", "--columns", "a"], "numeric"),
    (["--csv", "{d}/nan.csv", "--columns", "a,b"], "finite"),
    (["--csv", "{d}/const.csv", "--columns", "a,b"], "constant"),
    (["--csv", "{d}/ragged.csv", "--columns", "a"], "fields"),
    (["--csv", "{d}/const.csv"], "--columns"),
    (["--csv", "{d}/empty.csv"], "header"),
    (["--csv", "{d}/header.csv"], "header"),
    (["--csv", "{d}/binary.csv"], "UTF-8"),
    (["--csv", "{d}/const.csv", "--columns", "a", "--target", "b"], "--target"),
    (["--csv", "{d}/const.csv", "--columns", "zz"], "zz"),
    (["--csv", "{d}/text.csv", "--columns", "t,b", "--input", "position"], "one column"),
])
def test_bad_input_exits_2_with_one_line(bad_csvs, tmp_path, capsys, args, needle):
    args = [a.replace("{d}", str(bad_csvs)) for a in args]
    line = one_line_error(handgrad_in_process(capsys, "train", "--quiet", "--out", tmp_path, *args))
    assert needle in line, line


def test_bad_input_through_a_real_process(bad_csvs, tmp_path):
    """A sample of the cases above as a user meets them: a separate process, exit status 2."""
    for args, needle in ((["--epochs", "-1"], "--epochs"), (["--window", "500"], "too long"),
                         (["--csv", bad_csvs / "nan.csv"], "finite"),
                         (["--bogus"], "unrecognized")):
        assert needle in one_line_error(handgrad("train", "--quiet", "--out", tmp_path, *args))


@pytest.mark.parametrize("options, unit", [(["--activation", "relu"], "relu"),
                                           (["--cell", "gru"], "gru"),
                                           (["--cell", "lstm", "--bias"], "lstm")])
def test_other_cells_train_forecast_and_reload(tmp_path, capsys, options, unit):
    """Issues 10 and 11: relu and the gated cells train on the sine task (nothing else in
    training changes), and their model files reload and forecast."""
    r = handgrad_in_process(capsys, "train", *options, "--hidden", "16", "--epochs", "8",
                            "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    m = metrics(tmp_path / "run")
    first, last = m["history"][0]["val_loss"], m["history"][-1]["val_loss"]
    assert last < first / 10, (first, last)                # it learns
    model = load_model(tmp_path / "run" / "model.npz")
    assert model.spec.cell == (unit if unit != "relu" else "elman")
    assert model.spec.activation == ("relu" if unit == "relu" else "tanh")
    r = handgrad_in_process(capsys, "forecast", tmp_path / "run" / "model.npz", "--steps", "3")
    assert r.returncode == 0 and "RMSE" in r.stdout, r.stderr


def test_activation_with_a_gated_cell_is_a_usage_error(capsys):
    line = one_line_error(handgrad_in_process(capsys, "train", "--cell", "gru", "--activation",
                                              "relu"))
    assert "activation" in line and "gru" in line
