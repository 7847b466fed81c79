"""`--out` and `--checkpoint-dir` that cannot be written fail in one line, exit 1, before anything loads.

Cases: a parent that is a file, a folder without write permission (as root, the check runs with the effective
user `nobody`, since root may write anywhere), and a read-only file system. No read-only mount can be made
without privileges, so that case makes the probe folder's creation fail with EROFS, the error the kernel gives.
"""

import errno
import os
import shutil
import tempfile

import pytest

from sft_course import cli, experiment, own_data, pretrain
from sft_course.cli import main
from sft_course.errors import OptionsError
from sft_course.output_paths import check_writable_folder

NOBODY = 65534


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a file\n")
    (tmp_path / "data.jsonl").write_text('{"instruction": "q", "response": "a"}\n')

    def must_not_run(*args, **kwargs):
        raise AssertionError("a bad output folder reached the training code")

    for module, name in ((experiment, "run_sft"), (pretrain, "pretrain"), (own_data, "run_file_sft")):
        monkeypatch.setattr(module, name, must_not_run)
    return tmp_path


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _as_nobody():
    """Drop the effective user to `nobody` while root (restored by the caller), so permissions apply."""
    if os.geteuid() == 0:
        os.seteuid(NOBODY)
        return True
    return False


def _check_one_line(code, out, err, words):
    assert code == 1 and out == "", err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert words in err, err


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_parent_is_a_file(flag, workdir, capsys):
    argv = (
        ["sft", "--out", "run", flag, "notes.txt/sub"]
        if flag == "--checkpoint-dir"
        else ["sft", "--out", "notes.txt/sub"]
    )
    _check_one_line(*_run(argv, capsys), f"{flag} notes.txt/sub cannot be created: ")
    assert not (workdir / "run").exists()


@pytest.fixture
def open_folder():
    """A folder every user may enter (pytest's own are root's alone), holding `locked`, which no one may write."""
    folder = tempfile.mkdtemp(prefix="sft-course-permission-")
    os.chmod(folder, 0o755)
    locked = os.path.join(folder, "locked")
    os.mkdir(locked)
    os.chmod(locked, 0o555)
    yield folder
    os.chmod(locked, 0o755)
    shutil.rmtree(folder)


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_no_permission(flag, workdir, open_folder, capsys):
    locked = os.path.join(open_folder, "locked")
    out = os.path.join(open_folder, "run")
    argv = (
        ["sft", "--out", out, flag, f"{locked}/ckpt"]
        if flag == "--checkpoint-dir"
        else ["sft", "--out", f"{locked}/run"]
    )
    dropped = _as_nobody()
    try:
        code, stdout, err = _run(argv, capsys)
    finally:
        if dropped:
            os.seteuid(0)
    _check_one_line(code, stdout, err, "cannot be written: no permission to write there")
    assert os.listdir(locked) == [] and not os.path.exists(out)


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_read_only_file_system(flag, workdir, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    argv = ["sft", "--out", "run", flag, "ckpt"] if flag == "--checkpoint-dir" else ["sft", "--out", "run"]
    if flag == "--checkpoint-dir":  # --out is checked first; let it pass
        real = check_writable_folder

        def only_ckpt(folder, flag_name="--out"):
            if flag_name == "--checkpoint-dir":
                real(folder, flag_name)

        monkeypatch.setattr(cli, "check_writable_folder", only_ckpt)
    _check_one_line(*_run(argv, capsys), "cannot be written: it is on a read-only file system")


def test_sft_with_data_checks_out_before_loading(workdir, capsys):
    _check_one_line(*_run(["sft", "--data", "data.jsonl", "--out", "notes.txt/sub"], capsys), "notes.txt is a file")


def test_pretrain_checks_out_too(workdir, capsys):
    _check_one_line(*_run(["pretrain", "--out", "notes.txt/base"], capsys), "--out notes.txt/base cannot be created")


def test_a_writable_place_passes_and_leaves_nothing(tmp_path):
    check_writable_folder(tmp_path / "a" / "b")
    check_writable_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OptionsError, match="is a file, not a folder"):
        (tmp_path / "f").write_text("x")
        check_writable_folder(tmp_path / "f")
