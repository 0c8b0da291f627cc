"""`handgrad tutorial` through the command line: every bug of the tutorial with a measured effect."""
import re
import subprocess
import sys

import pytest


def handgrad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    """A default-spec sine model trained briefly (the full default run is tested elsewhere)."""
    out = tmp_path_factory.mktemp("model")
    r = handgrad("train", "--epochs", "3", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    return out / "model.npz"


def test_tutorial_shows_every_bug_with_a_measured_effect(quick_model):
    r = handgrad("tutorial", "--model", quick_model, "--seeds", "2", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # the per-parameter table, at both initialisations
    rows = re.findall(r"^  d([UWV])\s+(\S+)\s+(\S+)\s+(\S+)\s+(-?\d\.\d+)$", out, re.M)
    assert [row[0] for row in rows] == list("UWVUWV")
    for name, exact, published, rel, cos in rows:
        assert float(rel) > 1, (name, rel)                  # the published gradient is wrong
        assert -1 <= float(cos) <= 1
    # every bug, each followed by at least one measured effect
    blocks = re.split(r"^BUG (\d): ", out, flags=re.M)[1:]
    numbers = blocks[0::2]
    assert numbers == [str(n) for n in range(1, 9)]
    for text in blocks[1::2]:
        assert "measured:" in text
    assert "changing y by 1 leaves them bit-identical" in out
    assert "repairing it alone leaves the published dU, dW, dV bit-identical" in out
    assert "all columns of dU are identical" in out
    assert re.search(r"100% of h_T entries are exactly 1\.0", out)
    assert "seeds 0..1 gives val RMSE" in out


def test_tutorial_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from handgrad.cli import main
    r = handgrad("tutorial", "--seeds", "-1")                  # one as a real process
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    data = tmp_path / "d.csv"
    data.write_text("a,b\n" + "\n".join(f"{i % 7},{i % 3}" for i in range(40)))
    assert main(["train", "--csv", str(data), "--columns", "a,b", "--epochs", "1", "--hidden",
                 "4", "--quiet", "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    for args, needle in ((["--epochs", "0"], "--epochs"),
                         (["--model", str(tmp_path / "none.npz")], "not a file"),
                         (["--bogus"], "unrecognized"),
                         (["--model", str(tmp_path / "m" / "model.npz"), "--seeds", "0"],
                          "sine task")):
        try:
            code = main(["tutorial", *args])
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, err
