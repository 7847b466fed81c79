"""The notebooks as committed: every figure saved as an image, no machine paths, tracebacks or warnings.

A learner reads the notebooks on GitHub or in the static site without running them, so what matters is what
the files hold. `make notebooks` re-executes them in place (inline backend, figures saved); this test fails
when a drawing cell has no image (a non-inline backend ran it, or it was never executed) or when an output
leaks something that belongs to one machine or one failed run.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import sft_course.plots

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# Calls that draw: pyplot itself, and every public function of sft_course.plots (whatever they are named).
PLOT_HELPERS = sorted(
    name
    for name, fn in inspect.getmembers(sft_course.plots, inspect.isfunction)
    if not name.startswith("_") and fn.__module__ == sft_course.plots.__name__
)
DRAWS = re.compile(
    r"\bplt\.(show|subplots?|figure|plot|bar|barh|hist|imshow|scatter)\(|\.plot\(|"
    + "|".join(rf"\b{re.escape(name)}\(" for name in PLOT_HELPERS)
)
# An absolute path: /dir/dir... not inside a URL or a relative path, or a Windows drive; or a home folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.+-]+/)+[\w.+-]+|\b[A-Za-z]:\\[\w.-]+|~/[\w.-]+")
WARNING_LINE = re.compile(r"^.*\b\w*Warning\b(:|\s*\()|warnings\.warn\(", re.MULTILINE)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*Error: ", re.MULTILINE)
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_texts(output: dict) -> list[str]:
    """The human-readable text of one output (stream, result, display, error); images left out."""
    if output.get("output_type") == "stream":
        return [_text(output.get("text", ""))]
    if output.get("output_type") == "error":
        return [f"{output.get('ename')}: {output.get('evalue')}", *map(str, output.get("traceback", []))]
    data = output.get("data", {})
    return [_text(v) for k, v in data.items() if k.startswith("text/") or k.endswith("json")]


def problems(notebook: dict) -> list[str]:
    """Every way `notebook` (parsed .ipynb JSON) falls short of a committed notebook; empty when none."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        where = f"cell {index} ({cell.get('id', 'no id')})"
        source = _text(cell.get("source", ""))
        outputs = cell.get("outputs", [])
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
        if DRAWS.search(code) and not any(t in o.get("data", {}) for o in outputs for t in IMAGE_TYPES):
            found.append(f"{where}: draws a figure but has no image output (run it with the inline backend)")
        for output in outputs:
            if output.get("output_type") == "error":
                found.append(f"{where}: an error output ({output.get('ename')})")
            for text in output_texts(output):
                if m := TRACEBACK.search(text):
                    found.append(f"{where}: a traceback in the output: {m.group(0)!r}")
                if m := WARNING_LINE.search(text):
                    found.append(f"{where}: a warning in the output: {m.group(0).strip()[:120]!r}")
                if m := ABSOLUTE_PATH.search(text):
                    found.append(f"{where}: an absolute path in the output: {m.group(0)!r}")
    return found


# The checker itself, on small hand-made notebooks.


def _nb(source: str, *outputs: dict) -> dict:
    return {"cells": [{"cell_type": "code", "id": "c0", "source": source, "outputs": list(outputs)}]}


def _stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


PNG = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure size 600x400>"}}


def test_a_clean_notebook_passes():
    nb = _nb("fig, ax = plt.subplots()\nax.bar(['a'], [1])\nplt.show()", PNG)
    nb["cells"].append(
        {
            "cell_type": "code",
            "source": "print('loss 0.5 nats/token, data/sft/train.jsonl')",
            "outputs": [_stream("loss 0.5 nats/token, data/sft/train.jsonl, see https://huggingface.co/docs/x\n")],
        }
    )
    assert problems(nb) == []


@pytest.mark.parametrize(
    "source",
    [
        "plt.show()",
        "fig, ax = plt.subplots(figsize=(4, 3))",
        "plot_loss_curves(history)",
        f"{PLOT_HELPERS[0]}(x, y)",
        "ax.plot(xs, ys)",
    ],
)
def test_a_drawing_cell_without_an_image_fails(source):
    assert "no image output" in " ".join(problems(_nb(source, _stream("done\n"))))


def test_a_commented_out_plot_does_not_count_as_drawing():
    assert problems(_nb("# plt.show()\nprint(1)", _stream("1\n"))) == []


@pytest.mark.parametrize(
    "text, kind",
    [
        (
            "/work/main/.venv/lib/python3.11/site-packages/transformers/modeling_utils.py:3312: FutureWarning: x\n",
            "warning",
        ),
        ("/work/main/.venv/lib/python3.11/site-packages/transformers/modeling_utils.py:3312: y\n", "absolute path"),
        ("saved to /home/alice/course/out\n", "absolute path"),
        ("saved to C:\\Users\\alice\n", "absolute path"),
        ("UserWarning: something odd\n", "warning"),
        ("  warnings.warn(\n", "warning"),
        ("Traceback (most recent call last):\n  File x\nValueError: bad\n", "traceback"),
    ],
)
def test_outputs_with_paths_warnings_or_tracebacks_fail(text, kind):
    assert kind in " ".join(problems(_nb("print(x)", _stream(text, "stderr"))))


def test_an_error_output_fails():
    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["ValueError: bad"]}
    assert "error output" in " ".join(problems(_nb("raise ValueError('bad')", error)))


# The committed notebooks.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_its_figures_and_clean_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code"), (
        f"{path.name} is committed without outputs: run `make notebooks`"
    )
    found = problems(notebook)
    assert not found, f"{path.name}:\n  " + "\n  ".join(found)
