"""website/build.py: saved widget views become text a static page can show, and the README becomes the home page."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("website_build", Path(__file__).parent.parent / "website" / "build.py")
site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site)

VIEW = site.WIDGET_VIEW


def _tqdm_state():
    return {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_p", "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "Loading\u2007weights:\u2007100%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"max": 38.0, "value": 38.0}},
        "right": {"model_name": "HTMLModel", "state": {"value": "\u200738/38\u2007[00:00&lt;00:00]"}},
    }


def _quiz_state():
    return {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_q", "IPY_MODEL_radio"]}},
        "q": {"model_name": "HTMLModel", "state": {"value": "<b>Q1.</b> Which tokens?"}},
        "radio": {"model_name": "RadioButtonsModel", "state": {}},
    }


def _notebook(states, model_id):
    output = {
        "output_type": "display_data",
        "metadata": {},
        "data": {VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}, "text/plain": ["repr"]},
    }
    return {
        "metadata": {"widgets": {site.WIDGET_STATE: {"state": states}}},
        "cells": [
            {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": "Q1."}, output]},
            {"cell_type": "markdown", "source": "text"},
        ],
    }


def test_a_tqdm_bar_reads_like_its_terminal_line():
    assert site.widget_text(_tqdm_state(), "bar") == "Loading weights: 100%|##########| 38/38 [00:00<00:00]"


def test_a_tree_with_an_interactive_widget_has_no_static_text():
    assert site.widget_text(_quiz_state(), "box") is None


def test_a_missing_model_is_named():
    with pytest.raises(KeyError, match="widget model nope"):
        site.widget_text(_tqdm_state(), "nope")


def test_static_outputs_replace_views_keep_other_outputs_and_drop_the_widget_state():
    nb, counts = site.static_outputs(_notebook(_tqdm_state(), "bar"))
    outputs = nb["cells"][0]["outputs"]
    assert counts == {"text": 1, "note": 0}
    assert outputs[0]["text"] == "Q1."
    assert outputs[1]["data"] == {"text/plain": "Loading weights: 100%|##########| 38/38 [00:00<00:00]"}
    assert "widgets" not in nb["metadata"]

    nb, counts = site.static_outputs(_notebook(_quiz_state(), "box"))
    assert counts == {"text": 0, "note": 1}
    assert "JupyterLab" in nb["cells"][0]["outputs"][1]["data"]["text/markdown"]


def test_a_view_without_saved_state_falls_back_to_the_kernels_text():
    nb, counts = site.static_outputs(_notebook({}, "gone"))
    assert nb["cells"][0]["outputs"][1]["data"] == {"text/plain": "repr"}


def test_home_page_links_the_notebook_table_and_lists_every_notebook():
    readme = "# Course\n\n| notebook | you leave knowing |\n|---|---|\n| `01_base_model` | what pre-training gives |\n"
    page = site.home_page(readme, ["01_base_model", "02_dataset"])
    assert "| [01_base_model](notebooks/01_base_model.ipynb) | what pre-training gives |" in page
    assert page.startswith("# Course")
    toctree = page[page.index("```{toctree}") :]
    assert "notebooks/01_base_model" in toctree and "notebooks/02_dataset" in toctree


def test_a_collapsed_solution_cell_stays_collapsed_on_the_site():
    nb = _notebook({}, "gone")
    nb["cells"][0]["metadata"] = {"jupyter": {"source_hidden": True}}
    nb, _ = site.static_outputs(nb)
    assert nb["cells"][0]["metadata"]["tags"] == ["hide-input"]
    assert nb["cells"][1]["metadata"]["tags"] == []
