"""The README's plain pip lines (no `make`) install exactly what the Makefile installs: same pins, extras, lock."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()
README = (ROOT / "README.md").read_text()
WHEELHOUSE = "wheelhouse"


def make_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\??=\s*(.*)$", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile: no variable {name}"
    return match.group(1).strip()


def makefile_install(offline: bool) -> list[list[str]]:
    """The pip arguments of the `.installed` recipe, variables expanded, as `make install [WHEELHOUSE=...]` runs."""
    recipe = re.search(r"^\$\(VENV\)/\.installed:.*\n((?:\t.*\n)+)", MAKEFILE, re.MULTILINE).group(1)
    values = {
        "PIP": "pip install" + (f" --no-index --find-links {WHEELHOUSE}" if offline else ""),
        "LOCK_ARGS": f"-c {make_variable('CONSTRAINTS')}",
        "TORCH_PIN": make_variable("TORCH_PIN"),
        "SMOLLM2_PIN": make_variable("SMOLLM2_PIN"),
    }
    commands = []
    for line in recipe.splitlines():
        line = line.strip()
        if not line.startswith("$(PIP)"):
            continue
        expanded = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], line)
        commands.append([a for a in shlex.split(expanded) if a != "--quiet"])
    return commands


def readme_blocks() -> list[tuple[str, str]]:
    section = README.split("## Without make", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(bash|powershell)\n(.*?)```", section, re.DOTALL)


def pip_lines(block: str) -> list[list[str]]:
    commands = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if " -m pip install" in line:
            args = shlex.split(line.replace("\\", "/"), posix=True)
            commands.append(["pip"] + args[args.index("pip") + 1 :])
    return commands


def test_the_readme_has_plain_commands_for_both_shells_online_and_offline():
    kinds = {(shell, "--no-index" in block) for shell, block in readme_blocks()}
    assert kinds == {("bash", False), ("bash", True), ("powershell", False), ("powershell", True)}


def test_each_readme_block_installs_what_make_install_installs():
    for shell, block in readme_blocks():
        offline = "--no-index" in block
        assert pip_lines(block) == makefile_install(offline), f"README's {shell} block (offline={offline})"
        assert re.search(r"python3? -m venv \.venv|py -m venv \.venv", block), f"{shell}: no venv line"
        assert re.search(r"jupyter(\.exe)? lab notebooks", block), f"{shell}: no `jupyter lab` line"


def test_the_makefile_install_holds_to_the_lock_and_the_lab_goes_through_it():
    commands = makefile_install(offline=False)
    assert ["pip", "install", "-c", "constraints.txt", "-e", ".[dev]"] in commands
    assert any(c[-1] == make_variable("TORCH_PIN") and "-c" in c for c in commands)
    assert re.search(r"^lab: install", MAKEFILE, re.MULTILINE)


def test_the_lock_pins_every_direct_requirement_without_local_labels():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.split(";")[0].strip().partition("==")
            assert version and "+" not in version, f"constraints.txt: {line!r} is not name==version"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert pins["torch"] == make_variable("TORCH_PIN").split("==")[1]
    for name in ("transformers", "peft", "trl", "datasets", "accelerate", "jupyterlab", "nbval", "sphinx"):
        assert name in pins, f"constraints.txt does not pin {name}"


def test_the_devcontainer_runs_the_same_install():
    import json

    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert config["postCreateCommand"] == "make install"
    assert "python" in config["image"] and 8888 in config["forwardPorts"]
