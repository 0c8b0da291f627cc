"""Untrusted files and sizes (issue 12): zip bombs, devices and FIFOs, CSV cells, overflowing
values, absurd sizes and bad API arguments. Every test is bounded in time and memory: the bombs
are refused before they expand (measured with tracemalloc, which sees numpy's allocations)."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import handgrad as hg
from handgrad._files import file_limit, read_capped, read_npz
from handgrad.casefile import read_candidate, read_case, write_candidate, write_case
from handgrad.cli import main
from handgrad.strategies import make_case
from handgrad.train.data import Series, build_dataset, load_csv
from handgrad.train.model import load_model

MiB = 2**20


@pytest.fixture(scope="module")
def case():
    from handgrad.casefile import case_from_arrays
    d = make_case(hg.Spec.tutorial(), 2, 5, 3, 4, 1, seed=0)
    return case_from_arrays(d.spec, d.params, d.xs, d.ys, d.h0)


def bounded(fn, seconds=1.0, megabytes=20):
    """Run fn(); return its exception. Fails if it took longer than `seconds` or allocated more
    than `megabytes` at its peak."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned to the caller to inspect
        error = exc
    else:
        error = None
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < megabytes * MiB, f"peak {peak / MiB:.1f} MiB"
    return error


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape, descr="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def deflate_zeros(n: int) -> tuple[bytes, int]:
    """Raw deflate of n zero bytes, made in 1 MiB pieces (no n-byte buffer): (data, crc)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, out, crc = bytes(MiB), [], 0
    for _ in range(n // MiB):
        out.append(comp.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    out.append(comp.flush())
    return b"".join(out), crc


def raw_member(zf: zipfile.ZipFile, name: str, compressed: bytes, crc: int, size: int,
               method=zipfile.ZIP_DEFLATED):
    """Add a member with the given compressed bytes and a declared (possibly false) size."""
    info = zipfile.ZipInfo(name)
    info.compress_type = method
    info.CRC, info.compress_size, info.file_size = crc, len(compressed), size
    zf.fp.seek(zf.start_dir)
    info.header_offset = zf.fp.tell()
    zf.fp.write(info.FileHeader(size >= 0xFFFFFFFF))
    zf.fp.write(compressed)
    zf.start_dir = zf.fp.tell()
    zf.filelist.append(info)
    zf.NameToInfo[name] = info


# ----------------------------------------------------------------- zip bombs


def test_deflate_bomb_declaring_more_than_the_limit_is_refused_before_expanding(tmp_path, case):
    """64 MiB of zeros deflate to 64 KB; with a 1 MiB limit the member is refused from its
    declared size, nothing decompressed."""
    path = write_case(tmp_path / "c.npz", case)
    data, crc = deflate_zeros(64 * MiB)
    with zipfile.ZipFile(path, "a") as zf:
        zf.comment = b""
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w") as zf:
        raw_member(zf, "xs.npy", data, crc, 64 * MiB)
    assert bomb.stat().st_size < 100_000
    with file_limit(1):
        err = bounded(lambda: read_case(bomb), seconds=0.5, megabytes=5)
    assert isinstance(err, ValueError) and "more than the limit" in str(err), err
    assert "--max-file-mb" in str(err)


def test_member_declaring_20_gib_is_refused_from_the_directory(tmp_path):
    """A 28 KB file declaring 20 GiB (zip64 sizes), at the default limit."""
    data, crc = deflate_zeros(MiB)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w") as zf:
        raw_member(zf, "xs.npy", data, crc, 20 * 2**30)
    err = bounded(lambda: read_case(bomb), seconds=0.5, megabytes=5)
    assert isinstance(err, ValueError) and "more than the limit" in str(err), err


def test_member_lying_about_its_size_expands_no_further_than_declared(tmp_path):
    """Declares 1 KB, holds 64 MiB of deflated zeros: zipfile stops at the declared size."""
    data, crc = deflate_zeros(64 * MiB)
    bomb = tmp_path / "liar.npz"
    with zipfile.ZipFile(bomb, "w") as zf:
        raw_member(zf, "xs.npy", data, crc, 1024)
    err = bounded(lambda: read_case(bomb), seconds=0.5, megabytes=5)
    assert isinstance(err, ValueError) and "unreadable" in str(err), err


def test_many_members_each_under_the_limit_are_refused_by_their_total(tmp_path):
    """The 9 KB case file that took 86 s and 4.7 GB: many members each just under the limit."""
    data, crc = deflate_zeros(8 * MiB)
    bomb = tmp_path / "many.npz"
    with zipfile.ZipFile(bomb, "w") as zf:
        for name in ("U", "W", "V", "xs", "ys", "loss", "grad_U", "grad_W", "grad_V"):
            raw_member(zf, f"{name}.npy", data, crc, 8 * MiB)
    with file_limit(10):
        err = bounded(lambda: read_case(bomb), seconds=0.5, megabytes=5)
    assert isinstance(err, ValueError) and "declare" in str(err) and "limit" in str(err), err


def test_unknown_member_is_refused_before_anything_is_decompressed(tmp_path):
    data, crc = deflate_zeros(64 * MiB)
    bomb = tmp_path / "evil.npz"
    with zipfile.ZipFile(bomb, "w") as zf:
        raw_member(zf, "evil.npy", data, crc, 64 * MiB)
    err = bounded(lambda: read_case(bomb), seconds=0.2, megabytes=5)
    assert isinstance(err, ValueError) and "unknown name(s) ['evil']" in str(err), err


def test_bzip2_and_lzma_members_are_refused(tmp_path, case):
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = tmp_path / f"m{method}.npz"
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            zf.writestr("loss.npy", npy_bytes(np.float64(1.0)))
        err = bounded(lambda: read_candidate(path, case), seconds=0.5)
        assert isinstance(err, ValueError) and "compression method" in str(err), err


def test_too_many_members_are_refused_from_the_end_record(tmp_path):
    path = tmp_path / "crowd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(200):
            zf.writestr(f"a{i}.npy", b"")
    with pytest.raises(ValueError, match="at most 64"):
        read_npz(path, {"a"})


def test_model_claiming_an_8_tib_array_is_refused(tmp_path):
    """`internal error: MemoryError` before: the header's size is checked against the member's."""
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("series.npy", npy_header((2**40,)) + bytes(64))
    err = bounded(lambda: load_model(path), seconds=0.5, megabytes=5)
    assert isinstance(err, ValueError) and "header says" in str(err), err
    assert "not a handgrad model" in str(err)


def test_fortran_order_and_big_endian_arrays_read_back(tmp_path):
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    b = np.arange(5, dtype=">i4")
    path = tmp_path / "x.npz"
    np.savez_compressed(path, U=a, W=b)
    got = read_npz(path, {"U", "W"})
    assert np.array_equal(got["U"], a) and np.array_equal(got["W"], b)


@pytest.mark.parametrize("dtype", ["M8[s]", "m8[s]", "V8", "S3", [("a", "<f8")]])
def test_dates_bytes_and_records_are_not_numbers(tmp_path, dtype):
    path = tmp_path / "d.npz"
    np.savez(path, U=np.zeros(3, dtype=dtype))
    with pytest.raises(ValueError, match="not allowed"):
        read_npz(path, {"U"})


def _model_file(tmp_path):
    from handgrad.train import TrainConfig, train, tutorial_dataset
    from handgrad.train.model import Model, save_model
    data = tutorial_dataset()
    r = train(data, TrainConfig(epochs=1, hidden=4), progress=False)
    path = tmp_path / "model.npz"
    save_model(str(path), Model(r.params, r.spec, data.series, data.scaler, data.inputs,
                                data.window, data.target_cols, len(data.train.ys), {}))
    return path


def _edit_meta(path, out, edit):
    arrays = read_npz(path, {"U", "W", "V", "b", "c", "series", "center", "scale", "meta"})
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(edit(meta))
    np.savez(out, **arrays)
    return out


def test_model_meta_nested_100000_deep_is_a_value_error(tmp_path):
    path = _model_file(tmp_path)
    deep = "[" * 100_000 + "]" * 100_000
    bad = _edit_meta(path, tmp_path / "deep.npz", lambda m: '{"format": ' + deep + "}")
    with pytest.raises(ValueError, match="meta is not valid JSON"):
        load_model(bad)


@pytest.mark.parametrize("edit, words", [
    (lambda m: {**m, "version": 999}, "version 999 is not supported"),
    (lambda m: {**m, "spec": {k: v for k, v in m["spec"].items() if k != "activation"}},
     "meta.spec must have exactly the fields"),
    (lambda m: {k: v for k, v in m.items() if k != "version"}, "fields"),
])
def test_model_version_and_spec_fields_are_checked(tmp_path, edit, words):
    path = _model_file(tmp_path)
    bad = _edit_meta(path, tmp_path / "bad.npz", lambda m: json.dumps(edit(m)))
    with pytest.raises(ValueError, match=words):
        load_model(bad)


# ----------------------------------------------------------------- devices and FIFOs


def test_dev_zero_is_refused_at_once(case):
    err = bounded(lambda: read_capped("/dev/zero"), seconds=0.5, megabytes=2)
    assert isinstance(err, ValueError) and "character device" in str(err), err
    with pytest.raises(ValueError, match="not a regular file"):
        load_csv("/dev/null")


def test_a_folder_is_refused(tmp_path, case):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ValueError, match="a folder"):
        read_candidate(tmp_path / "d.json", case)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_hanging(tmp_path, case):
    """In this process, with an alarm as a guard against a hang."""
    for name in ("case.json", "case.npz", "series.csv", "model.npz"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        readers = {"case.json": read_case, "case.npz": read_case, "series.csv": load_csv,
                   "model.npz": load_model}
        old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError()))
        signal.alarm(5)
        try:
            with pytest.raises(ValueError, match="a FIFO"):
                readers[name](fifo)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_through_the_command_line(tmp_path, case):
    write_case(tmp_path / "case.json", case)
    os.mkfifo(tmp_path / "cand.json")
    r = subprocess.run([sys.executable, "-m", "handgrad", "compare", tmp_path / "case.json",
                        tmp_path / "cand.json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "a FIFO" in r.stderr and len(r.stderr.splitlines()) == 1


def test_file_limit_can_be_raised(tmp_path, case, capsys, monkeypatch):
    path = write_candidate(tmp_path / "g.json", case.loss, case.grads)
    monkeypatch.setenv("HANDGRAD_MAX_FILE_MB", "0.0001")
    with pytest.raises(ValueError, match="HANDGRAD_MAX_FILE_MB"):
        read_candidate(path, case)
    monkeypatch.setenv("HANDGRAD_MAX_FILE_MB", "100")
    assert read_candidate(path, case).loss == pytest.approx(case.loss)
    monkeypatch.delenv("HANDGRAD_MAX_FILE_MB")
    case_path = write_case(tmp_path / "c.json", case)
    assert main(["--max-file-mb", "0.001", "compare", str(case_path), str(path)]) == 2
    assert "limit" in capsys.readouterr().err
    assert main(["--max-file-mb", "10", "compare", str(case_path), str(path)]) == 0


# ----------------------------------------------------------------- CSV files


def _csv(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_one_bad_cell_is_refused_with_its_line_and_column(tmp_path):
    """Before: the column was silently dropped. Line numbers count the blank lines."""
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(8))
    path = _csv(tmp_path, "a,b\n\n" + rows + "3,NA\n4,5\n")
    with pytest.raises(ValueError, match=r"line 11: column 'b' holds 'NA'"):
        load_csv(path)
    path = _csv(tmp_path, "a,b\n\n1,2\n\n3,\n")
    with pytest.raises(ValueError, match=r"line 5: column 'b' must be numeric, got ''"):
        load_csv(path, ["b"])


def test_text_columns_are_left_out_and_named(tmp_path):
    path = _csv(tmp_path, "when,v\nmon,1\ntue,2\nwed,4\n")
    s = load_csv(path)
    assert s.columns == ("v",) and s.dropped == ("when (line 2: 'mon')",)


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = _csv(tmp_path, "\ufeffv,w\n1,2\n2,3\n3,5\n")
    s = load_csv(path)
    assert s.columns == ("v", "w")
    assert load_csv(path, ["v"]).columns == ("v",)


def test_time_column_is_the_axis_not_data(tmp_path):
    s = load_csv(_csv(tmp_path, "Year,v\n2000,1\n2001,2\n2002,4\n"))
    assert s.columns == ("v",) and s.time_name == "Year" and list(s.time) == [2000, 2001, 2002]


def test_csv_is_streamed_not_held_as_rows(tmp_path):
    """50,000 rows, 0.6 MB of text: the values take 0.4 MB; the rows as Python lists of strings
    took 10.1 MiB at their peak before (measured); 0.8 MiB now."""
    n = 50_000
    path = tmp_path / "long.csv"
    with open(path, "w") as fh:
        fh.write("t,v\n")
        fh.writelines(f"{i},{i % 97}\n" for i in range(n))
    tracemalloc.start()
    s = load_csv(path, ["v"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert s.values.shape == (n, 1) and s.values[-1, 0] == (n - 1) % 97
    assert peak < 3 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("value, words", [("1e308", "within"), ("-1e200", "within"),
                                           ("inf", "finite")])
def test_values_that_overflow_when_scaled_or_squared_are_refused_at_input(tmp_path, value, words):
    rows = "".join(f"{v}\n" for v in ("1", value, "2", "3"))
    with pytest.raises(ValueError, match=f"line 3: column 'v' must be {words}"):
        load_csv(_csv(tmp_path, "v\n" + rows))


def test_series_beyond_the_float_range_is_refused_by_build_dataset():
    values = np.tile([[1e308], [-1e308], [5.0]], (10, 1))
    with pytest.raises(ValueError, match="column 'v', row 0: .* within"):
        build_dataset(Series(values, ("v",), "t"), 3, "steps", None, 1 / 3, "minmax")


def test_train_on_overflowing_csv_exits_2_before_writing(tmp_path, capsys):
    path = _csv(tmp_path, "v\n" + "".join(f"{(-1) ** i * 1e308}\n" for i in range(40)))
    code = main(["train", "--csv", str(path), "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "within" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_bundled_series_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--csv", "sunspots", "--epochs", "1", "--hidden", "4", "--quiet",
                 "--out", "sun"])
    out = capsys.readouterr().out
    assert code == 0 and "time axis YEAR 1700..2008" in out
    assert load_model(tmp_path / "sun" / "model.npz").series.columns == ("SUNACTIVITY",)
    assert main(["train", "--csv", "nosuch", "--quiet"]) == 2
    assert "bundled series" in capsys.readouterr().err


# ----------------------------------------------------------------- absurd sizes

HUGE = "1" + "0" * 30

ABSURD = [
    ["train", "--epochs", "1000000000"], ["train", "--epochs", "1000000"],
    ["train", "--epochs", HUGE], ["train", "--hidden", "1000000"], ["train", "--hidden", HUGE],
    ["train", "--window", HUGE], ["train", "--window", "1000000"],
    ["train", "--csv", "sunspots", "--window", "1000000"],
    ["case", "-B", "1000000000"], ["case", "-T", HUGE], ["case", "-D", HUGE],
    ["case", "-H", "1000000"], ["case", "-O", HUGE], ["case", "-B", HUGE],
    ["forecast", "{model}", "--steps", "1000000000"], ["forecast", "{model}", "--steps", HUGE],
    ["tutorial", "--seeds", HUGE], ["tutorial", "--seeds", "1000000"],
    ["tutorial", "--epochs", HUGE], ["truncation", "--epochs", HUGE],
    ["truncation", "--train-study", "--study-epochs", "1000000"],
]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return _model_file(tmp_path_factory.mktemp("m"))


@pytest.mark.parametrize("args", ABSURD, ids=lambda a: " ".join(a)[:40])
def test_absurd_sizes_fail_fast_naming_the_option(tmp_path, capsys, small_model, args):
    args = [a.replace("{model}", str(small_model)) for a in args]
    if args[0] in ("train", "truncation"):
        args += ["--out", str(tmp_path / "run")]
    if args[0] == "case":
        args += ["--out", str(tmp_path / "c.npz")]
    t0 = time.perf_counter()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    value = next(a for a in args if a.isdigit() and len(a) >= 7)
    option = args[args.index(value) - 1]
    assert f"{option} {value}" in err or ("window" in err and option == "--window"), err
    assert elapsed < 3, elapsed
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("args", [
    ["check", "--quick", "--seed", HUGE], ["case", "--seed", HUGE],
    ["train", "--seed", HUGE, "--epochs", "1", "--hidden", "4", "--quiet"],
])
def test_huge_seeds_work_or_fail_in_one_line(tmp_path, capsys, args):
    if args[0] in ("case",):
        args = args + ["--out", str(tmp_path / "c.npz")]
    if args[0] == "train":
        args = args + ["--out", str(tmp_path / "run")]
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2) and "internal error" not in err, err


# ----------------------------------------------------------------- API arguments


@pytest.mark.parametrize("call, name", [
    (lambda p, s: hg.adaptive_k(None, 0.1), "profile"),
    (lambda p, s: hg.streaming_loss_and_grads(p, None, s), "blocks"),
    (lambda p, s: hg.streaming_loss_and_grads(p, 5, s), "blocks"),
])
def test_public_functions_raise_value_error_naming_the_argument(call, name):
    spec = hg.Spec(truncation=hg.Window(2))
    params = hg.init_params(spec, 2, 3, 1)
    with pytest.raises(ValueError, match=name):
        call(params, spec)


def test_case_refuses_a_file_it_could_not_read_back(tmp_path, capsys):
    """-B 100000 as JSON: about 60 MB, more than the 32 MiB JSON limit of `compare`."""
    assert main(["case", "-B", "100000", "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "-B 100000" in err and "reads back" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
