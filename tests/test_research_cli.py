"""`handgrad truncation` end to end (subprocess), and the training study's loop."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import handgrad as hg
from handgrad.strategies import make_case
from handgrad.research.study import steps_backpropagated, train_scheme

PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", "truncation", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_tutorial_task_writes_plot_table_and_json(tmp_path):
    out = tmp_path / "run"
    res = _run("--epochs", "1", "--tol", "0.01", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "adaptive k" in res.stdout and "[init]" in res.stdout and "[trained 1 epochs]" in res.stdout
    assert (out / "truncation.png").read_bytes().startswith(PNG)
    with (out / "truncation.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 50 and rows[0]["k"] == "0" and rows[-1]["k"] == "49"
    report = json.loads((out / "truncation.json").read_text())
    assert report["sizes"] == {"B": 100, "T": 50, "D": 50, "H": 100}
    init = report["stages"]["init"]
    assert 0 < init["rate"] < 1 and set(init["adaptive_k"]) == {"0.01"}
    # the adaptive k meets the tolerance on the measured bias (the bound is rigorous here)
    assert init["adaptive_k_measured_bias"]["0.01"] <= 0.01
    assert report["table"][-1]["bias"] == 0.0            # Window(T - 1) is full BPTT


def _main(*args):
    """In process (cheaper than a subprocess; the subprocess path is tested above)."""
    from handgrad.cli import main
    return main(["truncation", *args])


def test_case_file_and_train_study(tmp_path, capsys):
    from handgrad.casefile import case_from_arrays, write_case
    spec = hg.Spec(cell="lstm", output="all", head=False)       # any cell, head or not
    c = make_case(spec, 2, 6, 2, 3, 2, seed=1)
    path = tmp_path / "case.npz"
    write_case(path, case_from_arrays(spec, c.params, c.xs, c.ys, c.h0))
    assert _main("--case", str(path), "--no-plot", "--out", str(tmp_path / "a")) == 0
    assert not (tmp_path / "a" / "truncation.png").exists()
    report = json.loads((tmp_path / "a" / "truncation.json").read_text())
    assert list(report["stages"]) == ["case"] and report["stages"]["case"]["artbp"] == []
    assert report["sizes"] == {"B": 2, "T": 6, "D": 2, "H": 3}
    sweep = hg.truncation_sweep(c.params, c.xs, c.ys, spec, h0=c.h0)
    np.testing.assert_allclose([row["bias_W_hh"] for row in report["table"]],
                               sweep.per_param["W_hh"].l2_error, rtol=1e-12, atol=1e-300)
    assert _main("--epochs", "0", "--train-study", "--study-epochs", "1",
                 "--schemes", "window:2,artbp:0.3", "--no-plot", "--out", str(tmp_path / "b")) == 0
    assert "training under truncation" in capsys.readouterr().out
    study = json.loads((tmp_path / "b" / "study.json").read_text())
    assert [r["scheme"] for r in study["runs"]] == ["window:2", "artbp:0.3"]
    assert study["runs"][0]["backprop_steps"] == [0, 100 * 3]
    assert 100 <= study["runs"][1]["backprop_steps"][1] <= 100 * 50
    assert not (tmp_path / "b" / "study.png").exists()


@pytest.mark.parametrize("args, word", [
    (["--model", "does-not-exist.npz"], "no such file"),
    (["--tol", "2"], "tolerances"),
    (["--schemes", "artbp:1.5"], "cut probability"),
    (["--case", "BAD"], "bad.npz"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, word):
    if "BAD" in args:
        bad = tmp_path / "bad.npz"
        bad.write_bytes(b"not a zip")
        args = [str(bad) if a == "BAD" else a for a in args]
    res = _run(*args, "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_study_loop_is_handgrad_train_and_chunks_is_a_shorter_window():
    """The study's loop reproduces handgrad.train.train exactly for a deterministic truncation;
    for a many-to-one loss Chunks(k) is Window(k - 1), so their runs coincide."""
    from handgrad.train import TrainConfig, train, tutorial_dataset
    data = tutorial_dataset()
    config = TrainConfig(epochs=1, hidden=16)          # small: the loop, not the task, is tested
    ref = train(data, config, progress=False)
    run = train_scheme(data, config, "window:5")
    assert run.val_loss == [h.val_loss for h in ref.history]
    assert run.train_loss == [h.train_loss for h in ref.history]
    chunks = train_scheme(data, config, "chunks:10")
    window = train_scheme(data, config, "window:9")
    assert chunks.val_loss == window.val_loss
    assert chunks.backprop_steps == window.backprop_steps == [0, 100 * 10]
    assert steps_backpropagated(None, 50) == 50 and steps_backpropagated(hg.Window(60), 50) == 50


def test_saved_model_is_analysed_on_its_training_windows(tmp_path):
    from handgrad.train import TrainConfig, tutorial_dataset
    from handgrad.train.model import Model, save_model
    data = tutorial_dataset()
    spec = TrainConfig().spec()
    params = hg.init_params(spec, 50, 8, 1, seed=2)
    path = tmp_path / "model.npz"
    save_model(str(path), Model(params, spec, data.series, data.scaler, data.inputs, data.window,
                                data.target_cols, len(data.train.ys), {}))
    assert _main("--model", str(path), "--no-plot", "--out", str(tmp_path / "m")) == 0
    report = json.loads((tmp_path / "m" / "truncation.json").read_text())
    assert report["sizes"] == {"B": 100, "T": 50, "D": 50, "H": 8}
    sweep = hg.truncation_sweep(params, data.train.xs, data.train.ys, spec)
    got = [row["rel_error"] for row in report["table"]]
    np.testing.assert_allclose(got, sweep.rel_error, rtol=1e-12, atol=1e-300)
