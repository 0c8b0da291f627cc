"""Runs that are whole or absent (issue 12): kill loops, Ctrl-C, concurrent runs, symlinks,
broken pipes, and every output mode of the commands. The kill loops use a tiny problem and a
handful of kills spread over one run's lifetime, so they stay within seconds."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from handgrad._files import RunFolder
from handgrad.cli import main
from handgrad.train.model import load_model
from conftest import need

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
SMALL = ["--epochs", "2", "--hidden", "6", "--quiet"]
RUN_FILES = {"metrics.json", "model.npz", "plot.png"}


def start(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "handgrad", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "handgrad", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def whole_run(folder) -> dict:
    """The metrics of a whole train run folder (asserting it is whole)."""
    assert set(os.listdir(folder)) >= RUN_FILES, os.listdir(folder)
    with open(folder / "metrics.json") as fh:
        metrics = json.load(fh)
    model = load_model(folder / "model.npz")
    assert model.meta["config"]["epochs"] == metrics["epochs"]
    assert (folder / "plot.png").read_bytes().startswith(b"\x89PNG")
    return metrics


def leftovers(parent) -> list:
    return [n for n in os.listdir(parent) if n.startswith(".")]


@pytest.fixture(scope="module")
def run_seconds(tmp_path_factory):
    """How long one small train run takes here, start to exit."""
    out = tmp_path_factory.mktemp("timing") / "run"
    t0 = time.perf_counter()
    r = run("train", *SMALL, "--out", out)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t0


# ----------------------------------------------------------------- kills


def test_sigkill_leaves_the_run_whole_or_absent_and_never_blocks_the_next(tmp_path, run_seconds):
    """Five kills into one output folder, spread over a run's lifetime (most in the last part,
    where the files are written); each leaves it absent or whole."""
    out = tmp_path / "run"
    for f in (0.5, 0.8, 0.9, 0.95, 0.99):
        if out.exists():
            whole_run(out)
            break
        p = start("train", *SMALL, "--out", out)    # no --force: an earlier kill never blocks
        time.sleep(f * run_seconds)
        p.kill()
        p.communicate()
    if out.exists():
        whole_run(out)
    else:
        assert run("train", *SMALL, "--out", out).returncode == 0
        whole_run(out)
    assert leftovers(tmp_path) == [], leftovers(tmp_path)   # the killed runs' stages removed


def test_sigkill_with_force_keeps_the_old_run_or_the_new_one_never_a_mix(tmp_path, run_seconds):
    out = tmp_path / "run"
    assert run("train", "--epochs", "1", "--hidden", "6", "--quiet", "--out", out).returncode == 0
    old_plot = (out / "plot.png").read_bytes()
    for f in (0.6, 0.85, 0.95, 1.1):
        p = start("train", *SMALL, "--force", "--out", out)
        time.sleep(f * run_seconds)
        p.kill()
        p.communicate()
        m = whole_run(out)
        assert set(os.listdir(out)) == RUN_FILES
        assert ((out / "plot.png").read_bytes() == old_plot) == (m["epochs"] == 1)


def wait_for_numpy(p, timeout=60.0) -> None:
    """Return once the child has mapped numpy's C extension: it is inside `import handgrad`
    (numpy is imported there, after handgrad/_cli_start.py). Before that, a SIGINT is Python's
    own business (it fails inside `site`, before any handgrad code runs)."""
    maps = f"/proc/{p.pid}/maps"
    if not os.path.exists(maps):
        pytest.skip("needs /proc to see when the import starts")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with open(maps) as fh:
            if "_multiarray_umath" in fh.read():
                return
        time.sleep(0.001)
    raise AssertionError("numpy never loaded")


def test_ctrl_c_anywhere_is_one_line_exit_130_and_nothing_half_written(tmp_path, run_seconds):
    """While `import handgrad` runs (a traceback before), and later, to the end of the run."""
    for i, at in enumerate([0.0, 0.05, 0.5 * run_seconds, 0.7 * run_seconds, 0.9 * run_seconds]):
        out = tmp_path / f"run{i}"
        p = start("train", *SMALL, "--out", out)
        if i < 2:
            wait_for_numpy(p)
        time.sleep(at)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        if p.returncode == 0:                    # finished before the signal
            whole_run(out)
            continue
        assert p.returncode == 130, (at, p.returncode, err)
        assert err.strip().splitlines()[-1] == "handgrad: interrupted", err
        assert "Traceback" not in err, err
        assert leftovers(tmp_path) == [], leftovers(tmp_path)
        if out.exists():                         # interrupted after the folder was published
            whole_run(out)
            continue
        r = run("train", *SMALL, "--out", out)            # no --force needed after Ctrl-C
        assert r.returncode == 0, r.stderr


def test_a_swallowed_ctrl_c_still_publishes_nothing(tmp_path, monkeypatch, capsys):
    """Once, a Ctrl-C was swallowed during plotting and the command exited 0."""
    from handgrad._files import INTERRUPTED
    import handgrad.train.plots as plots
    real = plots.training_png

    def swallowing(*args, **kw):
        INTERRUPTED.set()                       # what the handler records before raising
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:               # ... and something catches it
            pass
        return real(*args, **kw)

    monkeypatch.setattr(plots, "training_png", swallowing)
    code = main(["train", *SMALL, "--out", str(tmp_path / "run")])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- concurrency and names


def test_two_concurrent_runs_into_one_folder_one_wins_the_other_refuses(tmp_path):
    out = tmp_path / "same"
    procs = [start("train", *SMALL, "--out", out) for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert ("another handgrad run" in loser[1] or "already exists" in loser[1]), loser[1]
    assert len(loser[1].strip().splitlines()) == 1
    whole_run(out)
    assert leftovers(tmp_path) == []


def test_dangling_symlink_as_out_is_not_replaced_without_force(tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert main(["train", *SMALL, "--out", str(link)]) == 2
    assert "dangling symbolic link" in capsys.readouterr().err
    assert link.is_symlink()
    assert main(["train", *SMALL, "--out", str(link), "--force"]) == 0
    assert not link.is_symlink()
    whole_run(link)


def test_a_folder_with_other_files_is_never_replaced(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "model.npz").write_bytes(b"old")
    for extra in ([], ["--force"]):
        assert main(["train", *SMALL, "--out", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert ("notes.txt" in err or "model.npz already exists" in err), err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_force_replaces_an_old_run_and_its_forecasts_whole(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "6", "--quiet", "--out", str(out)]) == 0
    assert main(["forecast", str(out / "model.npz"), "--steps", "3"]) == 0
    assert (out / "forecast.png").exists()
    assert main(["train", *SMALL, "--out", str(out), "--force"]) == 0
    assert set(os.listdir(out)) == RUN_FILES and whole_run(out)["epochs"] == 2
    assert leftovers(tmp_path) == []


def test_run_folder_on_an_error_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path / "r", ["a.txt", "b.txt"], False) as folder:
            folder.write_bytes("a.txt", b"1")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with RunFolder(tmp_path / "r", ["a.txt", "b.txt"], False) as folder:
        folder.write_bytes("a.txt", b"1")
        folder.write_bytes("b.txt", b"2")
        assert not (tmp_path / "r").exists()          # nothing visible until the end
    assert sorted(os.listdir(tmp_path / "r")) == ["a.txt", "b.txt"]
    assert os.listdir(tmp_path) == ["r"]


def test_truncation_publishes_its_folder_whole(tmp_path, capsys):
    out = tmp_path / "t"
    case = tmp_path / "c.npz"
    assert main(["case", "--out", str(case), "-T", "12"]) == 0
    assert main(["truncation", "--case", str(case), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["truncation.csv", "truncation.json", "truncation.png"]
    assert main(["truncation", "--case", str(case), "--no-plot", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------- pipes and entry points


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "run"
    assert run("train", *SMALL, "--out", out).returncode == 0
    return out / "model.npz"


def test_forecast_into_a_closed_pipe_exits_quietly_and_keeps_its_plot(model, tmp_path):
    """`handgrad forecast MODEL | head -1`: exit 141 (as SIGPIPE), no message, plot whole."""
    plot = tmp_path / "f.png"
    p = start("forecast", model, "--steps", "2000", "--plot", plot, bufsize=1)
    p.stdout.readline()
    p.stdout.close()                                       # the reader goes away
    err = p.stderr.read()
    p.stderr.close()
    p.wait(timeout=60)
    assert p.returncode == 141, (p.returncode, err)
    assert err == "", err
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_forecast_never_refuses_because_an_old_plot_exists(model, capsys):
    assert main(["forecast", str(model), "--steps", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["forecast", str(model), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "forecast-2.png" in out and out.count("\n") == first.count("\n")
    assert main(["forecast", str(model), "--steps", "3", "--plot",
                 str(model.parent / "forecast.png")]) == 2      # named explicitly: refused
    assert "--force" in capsys.readouterr().err


def test_python_dash_m_handgrad_works():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("handgrad "), r
    r = run("case", "--help")
    assert r.returncode == 0 and "--out" in r.stdout


def test_case_says_which_spec_it_wrote(tmp_path, capsys):
    assert main(["case", "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "spec (the default: the tutorial's): activation sigmoid, bias False" in out
    assert "truncation Window(5)" in out
    assert main(["case", "--out", str(tmp_path / "d.json"), "--activation", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "spec: activation tanh" in out and "default" not in out


# ----------------------------------------------------------------- every output mode


def test_check_json_full_and_quick(capsys):
    """`check --json` always crashed (numpy bools); only --quick --json was tested."""
    for extra in ([], ["--quick"]):
        code = main(["check", "--json", "--no-jax", *extra])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0 and doc["ok"] is True and doc["rows"], doc
        assert all(isinstance(r["ok"], bool) for r in doc["rows"])
        assert set(doc["methods"]) == ({"complex_step"} if extra else {"complex_step", "central"})


def test_check_json_with_jax(capsys):
    need("jax")
    code = main(["check", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "jax" in doc["methods"]


def test_check_table_without_jax(capsys):
    """The table with JAX and --quick are tested in test_core_check_cli.py."""
    assert main(["check", "--no-jax"]) == 0
    out = capsys.readouterr().out
    assert "PASS: all" in out and "JAX: skipped (--no-jax)" in out


def test_compare_match_and_mismatch_modes(tmp_path, capsys):
    from handgrad.casefile import read_case, write_candidate
    for suffix in ("npz", "json"):
        case_path = tmp_path / f"c.{suffix}"
        assert main(["case", "--out", str(case_path)]) == 0
        case = read_case(case_path)
        good = write_candidate(tmp_path / f"g.{suffix}", case.loss, case.grads)
        bad = write_candidate(tmp_path / f"b.{suffix}", case.loss,
                              case.grads._replace(W=case.grads.W * 1.5))
        assert main(["compare", str(case_path), str(good)]) == 0
        assert main(["compare", str(case_path), str(bad)]) == 1
    capsys.readouterr()


def test_train_prints_progress_or_not(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--hidden", "4", "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "wrote" in out and "epoch" in err                 # the progress bar is on stderr
    assert main(["train", "--epochs", "1", "--hidden", "4", "--quiet",
                 "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert "wrote" in out and err == ""
