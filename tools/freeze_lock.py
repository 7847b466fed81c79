"""Write constraints.txt from the running environment: `make freeze-lock` (the second half of `make lock`).

One `name==version` line per installed distribution except pip and the course itself, local version labels
dropped (torch's `+cpu`: the same pin then holds for macOS's and Windows' torch). A pinned version that needs a
newer Python than the oldest the course supports gets a marker (`; python_version >= "3.11"`), so that an install
on Python 3.10 takes the newest release that supports it instead of failing to resolve.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys

from packaging.specifiers import InvalidSpecifier, SpecifierSet

SUPPORTED_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
SKIP = {"pip", "sft-course"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_marker(requires_python: str | None) -> str:
    """`; python_version >= "3.11"`-style marker for the supported Pythons a release accepts ('' for all)."""
    if not requires_python:
        return ""
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return ""
    accepted = [v for v in SUPPORTED_PYTHONS if spec.contains(f"{v}.0", prereleases=True)]
    if accepted == SUPPORTED_PYTHONS or not accepted:
        return ""
    if accepted == SUPPORTED_PYTHONS[SUPPORTED_PYTHONS.index(accepted[0]) :]:
        return f'; python_version >= "{accepted[0]}"'
    return "; " + " or ".join(f'python_version == "{v}"' for v in accepted)


def lock_lines() -> list[str]:
    lines = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or normalized(name) in SKIP:
            continue
        version = dist.version.split("+")[0]
        lines[normalized(name)] = f"{name}=={version}{python_marker(dist.metadata.get('Requires-Python'))}"
    return [lines[k] for k in sorted(lines)]


def main() -> int:
    print(
        f"# The versions `make test` passed with: `make lock` writes this file (Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()})."
    )
    print("# `make install` holds every install to it; pyproject.toml keeps open ranges. Newer versions: README.")
    print("# A pin with a python_version marker needs a newer Python; older ones take the newest release they can.")
    for line in lock_lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
