"""Case and candidate files: round trips, every malformed input is one ValueError, fuzzed readers,
and the `handgrad case` / `handgrad compare` commands (exit 0 / 1 / 2, one line on errors)."""
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.casefile import (case_from_arrays, read_candidate, read_case, verify_case,
                               write_candidate, write_case)
from handgrad.strategies import make_case
from handgrad.tolerances import TOLERANCES


def fuzz_settings(n: int):
    """`n` examples under the dev and ci profiles; a quarter of the profile's count under
    `thorough` (500), so the fuzzers search harder when asked to."""
    return settings(max_examples=max(n, settings().max_examples // 4))


def _case(spec=None, with_h0=True, **sizes):
    spec = spec or hg.Spec(truncation=hg.Window(2))
    sizes = {"B": 2, "T": 4, "D": 2, "H": 3, "O": 2, **sizes}
    drawn = make_case(spec, **sizes, seed=3, with_h0=with_h0)
    return case_from_arrays(spec, drawn.params, drawn.xs, drawn.ys, drawn.h0)


@pytest.fixture(scope="module")
def case():
    return _case()


@pytest.fixture(scope="module")
def files(tmp_path_factory, case):
    """A valid case and candidate file in each format."""
    d = tmp_path_factory.mktemp("files")
    out = {}
    for suffix in ("npz", "json"):
        out[f"case.{suffix}"] = write_case(d / f"case.{suffix}", case)
        out[f"cand.{suffix}"] = write_candidate(d / f"cand.{suffix}", case.loss, case.grads, case.dh0)
    return out


@pytest.mark.parametrize("suffix", ["npz", "json"])
@pytest.mark.parametrize("spec", [hg.Spec(), hg.Spec.tutorial(),
                                  hg.Spec(loss="cross_entropy", output="all", bias=False,
                                          truncation=hg.TBPTT(2, 3))])
def test_case_round_trip(tmp_path, suffix, spec):
    case = _case(spec, with_h0=spec.bias)
    path = write_case(tmp_path / f"c.{suffix}", case)
    back = read_case(path)
    assert back.spec == case.spec
    assert back.loss == case.loss
    for a, b in zip(back.params, case.params):
        assert (a is None and b is None) or np.array_equal(a, b)
    np.testing.assert_array_equal(back.ys, case.ys)
    assert back.ys.dtype.kind == ("i" if spec.loss == "cross_entropy" else "f")
    assert (back.h0 is None) == (case.h0 is None)
    np.testing.assert_array_equal(back.dh0, case.dh0)
    verify_case(path, back, TOLERANCES["jax"])
    assert list(tmp_path.iterdir()) == [path]          # atomic write left no temp file


def test_zero_h0_is_absent(tmp_path):
    case = _case(with_h0=False)
    with np.load(write_case(tmp_path / "c.npz", case), allow_pickle=False) as z:
        assert "h0" not in z.files and "grad_h0" in z.files


@pytest.mark.parametrize("suffix", ["npz", "json"])
def test_candidate_round_trip_keeps_dtype(tmp_path, case, suffix):
    grads32 = {k: v.astype(np.float32) for k, v in case.grads.arrays().items()}
    cand = read_candidate(write_candidate(tmp_path / f"g.{suffix}", None, grads32), case)
    assert cand.loss is None and set(cand.grads) == {"U", "W", "V", "b", "c"}
    assert cand.dtype == (np.float32 if suffix == "npz" else np.float64)   # JSON has no float32


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _case_arrays(case):
    from handgrad.casefile import case_arrays
    return {**case_arrays(case), "spec": np.array(json.dumps(case.spec.to_dict()))}


BAD_CASES = {
    "unknown name": (lambda a: {**a, "extra": np.zeros(2)}, "unknown name"),
    "missing array": (lambda a: {k: v for k, v in a.items() if k != "grad_W"}, "missing grad_W"),
    "missing spec": (lambda a: {k: v for k, v in a.items() if k != "spec"}, "missing spec"),
    "wrong shape": (lambda a: {**a, "W": np.zeros((3, 2))}, "params.W must have shape"),
    "wrong grad shape": (lambda a: {**a, "grad_U": np.zeros((2, 2))}, "'grad_U' must have shape"),
    "complex dtype": (lambda a: {**a, "xs": a["xs"] + 0j}, "'xs' must hold real numbers"),
    "bool dtype": (lambda a: {**a, "V": a["V"] > 0}, "'V' must hold real numbers"),
    "string dtype": (lambda a: {**a, "b": np.array(["x"] * 3)}, "'b' must hold real numbers"),
    "nan": (lambda a: {**a, "U": np.full_like(a["U"], np.nan)}, "'U' must be finite"),
    "inf loss": (lambda a: {**a, "loss": np.float64(np.inf)}, "'loss' must be finite"),
    "loss vector": (lambda a: {**a, "loss": np.zeros(3)}, "'loss' must be a single number"),
    "spec not json": (lambda a: {**a, "spec": np.array("{oops")}, "'spec' is not valid JSON"),
    "spec bad field": (lambda a: {**a, "spec": np.array(json.dumps(
        {**hg.Spec().to_dict(), "activation": "softplus"}))}, "Spec.activation must be one of"),
    "spec missing field": (lambda a: {**a, "spec": np.array('{"activation": "relu"}')},
                           r"spec is missing field\(s\) \['bias'"),
    "spec numeric": (lambda a: {**a, "spec": np.array(3.0)}, "'spec' must be a JSON string"),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_case_npz_is_one_value_error(tmp_path, case, name):
    mutate, words = BAD_CASES[name]
    path = _npz(tmp_path / "bad.npz", **mutate(_case_arrays(case)))
    with pytest.raises(ValueError, match=words) as info:
        read_case(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_tampered_reference_is_refused(tmp_path, case):
    arrays = _case_arrays(case)
    arrays["grad_W"] = arrays["grad_W"] * 1.001
    path = _npz(tmp_path / "c.npz", **arrays)
    with pytest.raises(ValueError, match="stored reference grad_W does not match"):
        verify_case(path, read_case(path), TOLERANCES["jax"])


def test_object_array_in_npz_is_refused(tmp_path, case):
    arrays = _case_arrays(case)
    arrays["xs"] = np.array([None, 1], dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **arrays)                      # np.savez pickles object arrays
    with pytest.raises(ValueError, match="object arrays are not allowed"):
        read_case(path)


BAD_JSON = {
    "not an object": ("[1, 2]", "must be an object"),
    "ragged": ('{"U": [[1, 2], [3]]}', "not rectangular"),
    "string in array": ('{"U": [["a"]]}', "holds a str"),
    "bool in array": ('{"U": [[true]]}', "holds a bool"),
    "null array": ('{"U": null}', "holds a NoneType"),
    "object as array": ('{"U": {"a": 1}}', "holds a dict"),
    "NaN literal": (None, "must be finite"),
    "huge integer": ('{"U": [[1' + "0" * 30 + "]]}", "too large"),
    "spec wrong type": ('{"spec": 5}', "spec must be a JSON object"),
    "not utf-8": (b"\xff\xfe", "not valid JSON"),
    "truncated": ('{"U": [[1, 2]', "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_JSON))
def test_bad_case_json_is_one_value_error(tmp_path, case, files, name):
    text, words = BAD_JSON[name]
    if text is None:        # a valid file with one value replaced by NaN
        doc = json.loads(files["case.json"].read_text())
        doc["xs"][0][0][0] = float("nan")
        text = json.dumps(doc)
    path = tmp_path / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=words) as info:
        read_case(path)
    assert "\n" not in str(info.value)


def test_candidate_file_names_are_checked(tmp_path, case):
    path = write_candidate(tmp_path / "g.npz", case.loss, {**case.grads.arrays(), "d": np.zeros(1)})
    with pytest.raises(ValueError, match=r"unknown name\(s\) \['grad_d'\]"):
        read_candidate(path, case)
    path = write_candidate(tmp_path / "g.json", None, {"U": case.grads.U, "W": case.grads.W})
    with pytest.raises(ValueError, match="missing grad_V, grad_b, grad_c"):
        read_candidate(path, case)


def test_wrong_suffix_and_missing_file(tmp_path, case):
    with pytest.raises(ValueError, match="must end in .npz or .json"):
        write_case(tmp_path / "c.txt", case)
    with pytest.raises(ValueError, match="cannot read"):
        read_case(tmp_path / "absent.npz")


# ----------------------------------------------------------------- fuzzing the readers

def _read_both(path, case):
    """Both readers on one file: a ValueError or a result, nothing else."""
    for reader in (read_case, lambda p: read_candidate(p, case)):
        try:
            reader(path)
        except ValueError as exc:
            assert "\n" not in str(exc)


@fuzz_settings(40)
@given(data=st.binary(max_size=400), suffix=st.sampled_from(["npz", "json"]))
def test_fuzz_random_bytes(tmp_path_factory, case, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"f.{suffix}"
    path.write_bytes(data)
    _read_both(path, case)


@fuzz_settings(60)
@given(name=st.sampled_from(["case.npz", "cand.npz", "case.json", "cand.json"]),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_fuzz_mutated_valid_files(tmp_path_factory, case, files, name, edits, cut):
    data = bytearray(files[name].read_bytes())
    for where, byte in edits:                      # overwrite a few bytes anywhere
        data[int(where * len(data))] = byte
    if cut is not None:                            # and maybe truncate
        data = data[:int(cut * len(data))]
    path = tmp_path_factory.mktemp("mut") / name
    path.write_bytes(bytes(data))
    _read_both(path, case)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12)


@fuzz_settings(60)
@given(name=st.sampled_from(["case.json", "cand.json"]), value=json_values, data=st.data())
def test_fuzz_json_values(tmp_path_factory, case, files, name, value, data):
    doc = json.loads(files[name].read_text())
    key = data.draw(st.sampled_from(sorted(doc) + ["spec", "new"]))
    doc[key] = value                               # any JSON value in any place
    path = tmp_path_factory.mktemp("jv") / name
    path.write_text(json.dumps(doc))
    _read_both(path, case)


@fuzz_settings(30)
@given(name=st.sampled_from(["case.npz", "cand.npz"]), data=st.data())
def test_fuzz_npz_members(tmp_path_factory, case, files, name, data):
    """Valid zip structure, arrays swapped for arrays of other shapes and dtypes."""
    with np.load(files[name], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = data.draw(st.sampled_from(sorted(arrays)))
    dtype = data.draw(st.sampled_from(["f8", "f4", "i8", "u1", "?", "c16", "U3"]))
    shape = tuple(data.draw(st.lists(st.integers(0, 3), max_size=3)))
    arrays[key] = np.zeros(shape, dtype)
    path = tmp_path_factory.mktemp("npzm") / name
    _npz(path, **arrays)
    _read_both(path, case)


def test_npz_header_claiming_huge_array_is_refused(tmp_path):
    buf = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as zf:
        zf.writestr("xs.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(ValueError, match="header says"):
        read_case(tmp_path / "huge.npz")


# ----------------------------------------------------------------- the commands

def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _main(capsys, *args):
    from handgrad.cli import main
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_case_and_compare_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _main(capsys, "case", "--out", "c.json")
    assert code == 0 and out.startswith("wrote c.json")
    case = read_case(tmp_path / "c.json")
    assert case.spec == hg.Spec.tutorial() and case.xs.shape == (2, 8, 3)
    write_candidate(tmp_path / "good.npz", case.loss, case.grads)
    bad = case.grads._replace(U=case.grads.U + 1e-3)
    write_candidate(tmp_path / "bad.json", None, bad, case.dh0)
    code, out, _ = _main(capsys, "compare", "c.json", "good.npz")
    assert code == 0 and out.startswith("match"), out
    code, out, _ = _main(capsys, "compare", "c.json", "bad.json")
    assert code == 1
    assert "gradient mismatch in d loss/d U" in out and "worst element U[" in out
    # a bad file, in a real process: exit 2, one line on stderr, no traceback
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    junk = _cli("compare", "c.json", "junk.npz", cwd=tmp_path)
    assert junk.returncode == 2 and junk.stdout == ""
    assert len(junk.stderr.strip().splitlines()) == 1 and "Traceback" not in junk.stderr
    assert "junk.npz" in junk.stderr


def test_case_command_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, "case", "--out", "c.npz", "--activation", "tanh", "--bias",
                         "--output", "all", "--loss", "cross_entropy", "--truncation", "chunks:2",
                         "-T", "5", "-O", "3", "--seed", "7", "--no-h0")
    assert code == 0, err
    case = read_case(tmp_path / "c.npz")
    assert case.spec == hg.Spec(activation="tanh", bias=True, output="all", loss="cross_entropy",
                                truncation=hg.Chunks(2))
    assert case.h0 is None and case.ys.shape == (2, 5)
    for bad in (["--truncation", "window:x"], ["-T", "0"], ["-O", "1", "--loss", "cross_entropy"]):
        code, _, err = _main(capsys, "case", "--out", "d.npz", *bad)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    res = _cli("case", "--out", "c.txt", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "must end in .npz or .json" in res.stderr and not (tmp_path / "d.npz").exists()


@fuzz_settings(25)
@given(name=st.sampled_from(["case.npz", "cand.npz", "case.json", "cand.json"]),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=3))
def test_fuzz_compare_command(tmp_path_factory, files, name, edits):
    """`handgrad compare` on mutated files: exit 0, 1 or 2; a 2 is one line, never an internal
    error (the CLI turns unexpected exceptions into exit 2 too, so that is checked here)."""
    from handgrad.cli import main
    data = bytearray(files[name].read_bytes())
    for where, byte in edits:
        data[int(where * len(data))] = byte
    d = tmp_path_factory.mktemp("cli")
    (d / name).write_bytes(bytes(data))
    case = d / name if name.startswith("case") else files[name.replace("cand", "case")]
    cand = d / name if name.startswith("cand") else files[name.replace("case", "cand")]
    import contextlib
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["compare", str(case), str(cand)])
    assert code in (0, 1, 2)
    assert "internal error" not in err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1


def test_exclusive_write_never_replaces_another_runs_case(tmp_path):
    """Issue 12: two `handgrad case --out same` runs both passed the existence check; the write
    itself is exclusive now (the second one fails instead of replacing the first one's file)."""
    case = _case(hg.Spec.tutorial())
    path = write_case(tmp_path / "c.npz", case, exclusive=True)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="exists"):
        write_case(path, _case(hg.Spec()), exclusive=True)
    assert path.read_bytes() == before
