"""`make test` prints each notebook's wall time (notebooks/conftest.py), here on a one-cell notebook."""

import shutil
from pathlib import Path

import nbformat
import pytest

pytest_plugins = ["pytester"]


@pytest.mark.slow
def test_nbval_run_prints_each_notebooks_wall_time(pytester):
    shutil.copy(Path(__file__).resolve().parent.parent / "notebooks" / "conftest.py", pytester.path / "conftest.py")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(0.2)")])
    nbformat.write(notebook, str(pytester.path / "tiny.ipynb"))
    result = pytester.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "tiny.ipynb")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*notebook wall time*", "tiny.ipynb: * s (0:*)", "all notebooks: * s*"])
