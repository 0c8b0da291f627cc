"""Nothing a user has is ever lost: a command whose output already exists exits 2 with one line
and leaves the file as it was, unless --force."""
from handgrad.cli import main


def _run(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err


def test_case_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text("my own notes\n")
    code, err = _run(capsys, "case", "--out", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--force" in err, err
    assert path.read_text() == "my own notes\n"
    code, err = _run(capsys, "case", "--out", str(path), "--force")
    assert code == 0, err
    assert path.read_text().startswith("{")


def test_train_refuses_an_output_folder_with_its_files_before_training(tmp_path, capsys):
    (tmp_path / "model.npz").write_bytes(b"a model I care about")
    code, err = _run(capsys, "train", "--out", str(tmp_path), "--epochs", "1", "--quiet")
    assert code == 2 and "model.npz already exists" in err, err
    assert (tmp_path / "model.npz").read_bytes() == b"a model I care about"
    assert not (tmp_path / "metrics.json").exists()     # refused before any work was written
