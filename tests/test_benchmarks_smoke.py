"""Smoke test: `python benchmarks/run.py --quick` runs, prints the table and writes its JSON."""
import json
import os
import subprocess
import sys


from handgrad import TOLERANCES
from conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "run.py")

need("jax")


def test_quick_run_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--no-torch",
                           "--only", "gradient,matmul,training,memory", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "## targets" in proc.stdout and "hg/jax" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data["sections"]) == {"one gradient", "matmul rate", "tutorial training (--faithful)",
                                     "memory"}
    assert data["machine"]["cores"] >= 1
    rows = data["sections"]["one gradient"]["rows"]
    assert [(r["size"], r["truncation"]) for r in rows] == [
        ("large-quick", "full"), ("large-quick", "Window(5)"), ("gru large-quick", "full"),
        ("lstm large-quick", "full")]
    # every implementation computed the same gradient as handgrad (same work is timed)
    for row in rows:
        for key in ("err jax", "err loop"):
            if key == "err jax" or not row["size"].startswith(("gru", "lstm")):
                assert row[key] <= TOLERANCES["jax"], (key, row)
    names = [t["name"] for t in data["targets"]]
    assert any(n.startswith("handgrad/jax") for n in names)
    assert all(t["met"] in (True, False) for t in data["targets"]
               if not t["name"].startswith("handgrad/torch"))      # --no-torch: not measured
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".bench-")]   # atomic write
    shown = subprocess.run([sys.executable, SCRIPT, "--render", str(out)], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
    assert shown.returncode == 0 and shown.stdout.startswith("Machine: "), shown.stderr
    assert "## targets" in shown.stdout


def test_unknown_section_is_a_usage_error():
    proc = subprocess.run([sys.executable, SCRIPT, "--only", "nonsense"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "sections must be" in proc.stderr
