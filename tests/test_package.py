"""The package's shape: one home per job, no import cycle, one IGNORE_INDEX, every module documented."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sft_course"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))


def tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text())


def package_imports(node) -> set[str]:
    """The sft_course modules that the import statements directly under `node` name."""
    found = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("sft_course"):
            found.add(child.module.split(".")[1] if "." in child.module else child.names[0].name)
        elif isinstance(child, ast.Import):
            found |= {a.name.split(".")[1] for a in child.names if a.name.startswith("sft_course.")}
    return found


def test_module_level_imports_form_no_cycle():
    graph = {m: package_imports(tree(m)) for m in MODULES}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "active", f"import cycle: {' -> '.join(path + [module])}"
        state[module] = "active"
        for dependency in sorted(graph.get(module, ())):
            visit(dependency, path + [module])
        state[module] = "done"

    for module in MODULES:
        visit(module, [])


@pytest.mark.parametrize("module", [m for m in MODULES if m != "cli"])
def test_no_function_local_import_of_the_package(module):
    """Local imports hide cycles; only the command line imports lazily (to start fast)."""
    for node in ast.walk(tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                assert not (isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("sft_course")), (
                    f"{module}.{node.name} imports {inner.module} inside the function"
                )


@pytest.mark.parametrize("module", MODULES)
def test_no_bare_ignore_index_outside_masking(module):
    if module == "masking":
        return
    for node in ast.walk(tree(module)):
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and node.operand.value == 100
        ):
            pytest.fail(f"{module}.py line {node.lineno}: a bare -100; use masking.IGNORE_INDEX")


def test_readme_layout_lists_every_module_with_its_job():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1]
    for module in MODULES:
        assert re.search(rf"^\s*- `{module}`: \S", layout, re.MULTILINE), f"README's layout does not list `{module}`"
