"""`handgrad check --exec CMD` and `handgrad compare --exec CMD`: any program as a candidate,
searched, shrunk and blamed by time step like a Python one. The C candidate of examples/ is
compiled when a C compiler is on the machine (skipped otherwise)."""
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import settings

import handgrad as hg
from handgrad.cli import main
from handgrad.oracle import CandidateError, GradientMismatch, check
from handgrad.oracle.exec import ExecCandidate

ROOT = Path(__file__).resolve().parents[1]
C_SOURCE = ROOT / "examples" / "rnn_candidate.c"
SPEC = hg.Spec()                   # tanh, bias, many-to-many, half_squared, sum, full BPTT
SPEC_OPTIONS = ["--activation", "tanh", "--bias", "--output", "all", "--truncation", "full"]


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """The C candidate, built right and with its classic bug (W instead of W^T)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    out = tmp_path_factory.mktemp("c")
    built = {}
    for name, flags in (("ok", []), ("bug", ["-DCLASSIC_BUG"])):
        exe = out / f"rnn_{name}"
        subprocess.run([cc, "-O2", *flags, "-o", str(exe), str(C_SOURCE), "-lm"], check=True,
                       capture_output=True, timeout=120)
        built[name] = f"{exe} {{case}} {{out}}"
    return built


def test_correct_c_program_passes(programs):
    for spec in (SPEC, hg.Spec(activation="sigmoid", bias=False, output="last", loss="squared",
                               reduction="mean")):
        n = max(30, settings().max_examples // 4)      # 500 under the thorough profile
        candidate = ExecCandidate(programs["ok"], spec)
        report = check(candidate, spec, max_examples=n, save_dir=None)
        assert report.examples == n and candidate.calls == n and candidate.loss_returned


def test_c_bug_is_found_shrunk_and_saved(programs, tmp_path):
    with pytest.raises(GradientMismatch) as info:
        check(ExecCandidate(programs["bug"], SPEC), SPEC, save_dir=tmp_path)
    e = info.value
    assert not isinstance(e, CandidateError)
    # W and W^T differ only when H >= 2; dh0 = W^T dL/da_1 is the first thing it breaks
    assert e.param == "h0" and e.case.sizes == {"B": 1, "T": 1, "D": 1, "H": 2, "O": 1}
    assert "dh0 is taken wrongly from dL/da_1" in str(e)       # the time-step locator ran it
    assert e.path.exists()


def test_cli_check_exec_exit_status_and_report(programs, tmp_path, capsys):
    assert main(["check", "--exec", programs["ok"], *SPEC_OPTIONS, "--max-examples", "20",
                 "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "passed: 20 case(s)" in out and "runs of the command in" in out
    assert main(["check", "--exec", programs["bug"], *SPEC_OPTIONS,
                 "--save-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "gradient mismatch in d loss/d h0" in out and "H=2" in out
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert [Path(p).suffix for p in saved] == [".json", ".npz"]      # the program's format too
    again = next(line for line in out.splitlines() if "again: handgrad compare" in line)
    # compare --exec replays it with the same time-step blame as check
    assert main(["compare", str(tmp_path / saved[0]), "--exec", programs["bug"]]) == 1
    out = capsys.readouterr().out
    assert "dh0 is taken wrongly from dL/da_1" in out and saved[0] in again


def test_cli_compare_exec_blames_the_time_step(programs, tmp_path, capsys):
    """compare with a candidate file alone cannot run the program; with --exec it can."""
    case = tmp_path / "case.json"
    mine = tmp_path / "mine.json"
    assert main(["case", "--out", str(case), *SPEC_OPTIONS, "-H", "3"]) == 0
    subprocess.run(programs["bug"].format(case=case, out=mine), shell=True, check=True)
    capsys.readouterr()
    assert main(["compare", str(case), str(mine)]) == 1
    assert "time step" not in capsys.readouterr().out
    assert main(["compare", str(case), str(mine), "--exec", programs["bug"]]) == 1
    assert "time step: the dU and db terms of t=1..7 are wrong" in capsys.readouterr().out
    assert main(["compare", str(case), "--exec", programs["ok"]]) == 0


def test_a_hanging_program_is_killed(tmp_path):
    marker = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {marker}; wait # {{case}} {{out}}"
    start = time.perf_counter()
    with pytest.raises(CandidateError) as info:
        check(ExecCandidate(command, SPEC, timeout=0.3), SPEC, save_dir=None)
    assert time.perf_counter() - start < 10
    assert info.value.kind == "timeout" and "killed with its process group" in str(info.value)
    pid = int(marker.read_text())
    deadline = time.time() + 5
    while time.time() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the program's child survived the timeout"


def _alive(pid: int) -> bool:
    """Running or sleeping (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("command, kind, words", [
    ("echo 'cannot open {case}' >&2; exit 3 # {out}", "raised",
     "the command exited with status 3: cannot open"),
    ("true {case} {out}", "bad_output", "wrote no candidate file to {out}"),
    ("echo '{\"grad_U\": 1}' > {out} # {case}", "bad_output",
     "the candidate file is unusable: {out}: a candidate file (cell=elman, bias=True, head=True) is missing"),
])
def test_a_failing_program_is_reported(command, kind, words):
    with pytest.raises(CandidateError) as info:
        check(ExecCandidate(command, SPEC), SPEC, max_examples=5, save_dir=None)
    assert info.value.kind == kind and words in str(info.value), str(info.value)
    assert info.value.case.sizes == {"B": 1, "T": 1, "D": 1, "H": 1, "O": 1}   # shrunk


@pytest.mark.parametrize("argv, words", [
    (["check", "--exec", "prog {case}"], "command must contain {case} and {out}"),
    (["check", "--exec", "prog {case} {out}", "--sizes", "1,2,3"], "--sizes must be five"),
    (["check", "--exec", "prog {case} {out}", "--json"], "belong to the installation check"),
    (["check", "--exec", "prog {case} {out}", "--truncation", "window:x"], "truncation must be"),
    (["compare", "case.json"], "give a CANDIDATE file, or --exec CMD"),
])
def test_cli_usage_errors_exit_2(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_exec_candidate_arguments():
    for bad in ("", "   ", 3, "run {case}"):
        with pytest.raises(ValueError, match="command must"):
            ExecCandidate(bad, SPEC)
    with pytest.raises(ValueError, match="suffix must be one of"):
        ExecCandidate("p {case} {out}", SPEC, suffix=".csv")

