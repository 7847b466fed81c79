"""`sft-course check-setup`: each check, the fix lines for a missing package and a missing model, the estimates."""

import io
import os
import types
from pathlib import Path

import pytest

from sft_course import cli, setup_check, setup_probe

ROOT = Path(__file__).resolve().parent.parent


def fix_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("fix:")]


def test_python_older_than_3_10_is_refused():
    assert not setup_check.check_python((3, 9, 18)).ok
    assert "3.10" in setup_check.check_python((3, 9, 18)).fix
    assert setup_check.check_python((3, 13, 0)).ok


def test_memory_and_disk_thresholds(tmp_path):
    assert not setup_check.check_memory(2 * 2**30).ok
    assert setup_check.check_memory(16 * 2**30).ok
    assert "07" in setup_check.check_memory(6 * 2**30).detail  # enough, with a warning for notebook 07
    assert setup_check.check_memory(None).ok  # unknown memory is not a failure
    assert not setup_check.check_disk(tmp_path, free_bytes=10**9).ok
    assert setup_check.check_disk(tmp_path).ok


def test_the_installed_course_requires_its_dev_tools_too():
    names = [line.split(">")[0].split("=")[0].strip() for line in setup_check.course_requirements()]
    assert {"torch", "transformers", "peft", "nbval", "trl"} <= set(names)
    assert "sphinx" not in names  # the site extra is not needed to follow the course


def test_a_missing_package_fails_with_one_line_naming_it():
    out = io.StringIO()
    rc = setup_check.run(requirements=["pytest>=1.0", "no-such-course-package>=1.0"], out=out)
    text = out.getvalue()
    assert rc == 1
    assert fix_lines(text) == [f"fix: package no-such-course-package is missing: {setup_check.INSTALL_FIX}"]
    assert "FAIL package no-such-course-package" in text
    assert "expected here" not in text  # no timing without the packages


def test_a_package_older_than_its_minimum_fails():
    (check,) = setup_check.check_packages(["pytest>=999.0"])
    assert not check.ok and "too old" in check.fix and "pytest" in check.fix


def test_an_uninstalled_course_says_how_to_install():
    (check,) = setup_check.check_packages(None)
    assert not check.ok and "make install" in check.fix


def test_lock_differences_name_the_package_and_both_versions(tmp_path):
    import pytest as installed

    lock = tmp_path / "constraints.txt"
    lock.write_text("# a header\npytest==0.0.1\nno-such-package==1.0\n")
    assert setup_check.lock_differences(lock) == [f"pytest {installed.__version__} (lock 0.0.1)"]
    lock.write_text(f"pytest=={installed.__version__}\n")
    assert setup_check.lock_differences(lock) == []


def test_a_missing_model_fails_with_one_line_naming_the_folder(tmp_path, capsys):
    missing = tmp_path / "no-model"
    rc = cli.main(["check-setup", "--model", str(missing), "--no-timing"])
    text = capsys.readouterr().out
    assert rc == 1
    (line,) = fix_lines(text)
    assert str(missing) in line and line.startswith("fix: model:")
    assert "FAIL model" in text


def test_an_incomplete_model_folder_names_what_it_lacks(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check = setup_probe.check_model(tmp_path)
    assert not check.ok and "lacks weights" in check.fix


def test_the_bundled_model_and_the_smollm2_wheel_pass(capsys):
    assert cli.main(["check-setup", "--no-timing"]) == 0
    text = capsys.readouterr().out
    assert "ok   model" in text and "ready for the course" in text and not fix_lines(text)


def test_times_are_merged_into_the_file_by_notebook_name(tmp_path):
    path = tmp_path / "times.json"
    setup_check.record_notebook_times({"notebooks/01_base_model.ipynb": 6.14}, path)
    setup_check.record_notebook_times({"notebooks/02_dataset.ipynb": 7.46}, path)
    setup_check.record_probe({"train_seconds": 3.123, "generate_seconds": 1.0, "steps": 30}, path)
    times = setup_check.read_times(path)
    assert times["notebooks"] == {"01_base_model": 6.1, "02_dataset": 7.5}
    assert times["probe"]["train_seconds"] == 3.12 and times["probe"]["steps"] == 30


def test_a_broken_times_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "times.json"
    path.write_text("{\n  oops\n}")
    with pytest.raises(ValueError, match=r"times.json: line 2"):
        setup_check.read_times(path)


def test_estimates_scale_the_ci_times_by_the_short_runs_ratio():
    factor = setup_check.speed_factor(
        {"train_seconds": 6.0, "generate_seconds": 2.0}, {"train_seconds": 3.0, "generate_seconds": 1.0}
    )
    assert factor == 2.0
    (row,) = setup_check.estimates({"03_sft_loop": 100.0}, factor)
    assert row == setup_check.Estimate("03_sft_loop", 100.0, 200.0)


def test_the_committed_times_cover_every_notebook_and_hold_a_reference_run():
    times = setup_check.read_times()
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert notebooks <= set(times["notebooks"]), (
        f"benchmarks/notebook_times.json lacks {notebooks - set(times['notebooks'])}"
    )
    assert times["probe"]["train_seconds"] > 0 and times["probe"]["generate_seconds"] > 0


@pytest.mark.slow
def test_check_setup_times_a_short_run_and_predicts_every_notebook(tmp_path):
    """The real short run; under `make test` (SFT_COURSE_TIMES_FILE set) it becomes the CI reference."""
    probe = setup_probe.measure()
    assert probe["train_seconds"] > 0 and probe["generate_seconds"] > 0
    if os.environ.get(setup_check.TIMES_ENV):
        setup_check.record_probe(probe, os.environ[setup_check.TIMES_ENV])
    measured = types.SimpleNamespace(
        check_model=setup_probe.check_model, check_smollm2=setup_probe.check_smollm2, measure=lambda model: probe
    )
    out = io.StringIO()
    assert setup_check.run(load_probe=lambda: measured, out=out) == 0
    text = out.getvalue()
    assert "expected here" in text and "all notebooks" in text
    for name in setup_check.read_times()["notebooks"]:
        assert name in text
