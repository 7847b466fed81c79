"""Build the course website from the committed, executed notebooks, without running any of them.

    python website/build.py [--out build/site]

Steps: copy each `notebooks/NN_*.ipynb` into a scratch source folder (build/site-src), replacing the saved
ipywidgets views by what a reader without a kernel can use (a tqdm bar becomes its final line of text; an
interactive widget such as the quiz becomes a note that it runs in JupyterLab, next to the plain-text version
the cell prints anyway), write the home page from README.md (its notebook table linked to the pages), then
run Sphinx with MyST-NB (`nb_execution_mode = "off"`) and the configuration in website/conf.py.

Dropping the widget views keeps the site offline: with saved widget state, MyST-NB would load the widget
JavaScript from a CDN on every page.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Widgets that only do something with a live kernel behind them.
INTERACTIVE = {
    "ButtonModel",
    "RadioButtonsModel",
    "CheckboxModel",
    "DropdownModel",
    "TextModel",
    "TextareaModel",
    "IntSliderModel",
    "FloatSliderModel",
    "SelectModel",
    "ToggleButtonsModel",
}
INTERACTIVE_NOTE = (
    "*Interactive widget: in JupyterLab (`make lab`) this cell shows radio buttons and a Check "
    "button per question. The plain-text version above is the same quiz.*"
)
NOTEBOOK_ROW = re.compile(r"^\|\s*`?(\d\d_[A-Za-z0-9_]+?)(?:\.ipynb)?`?\s*\|")


def _plain(value: str) -> str:
    """An HTML widget value as text: tags dropped, entities and tqdm's figure spaces turned into spaces."""
    text = html.unescape(re.sub(r"<[^>]+>", "", value))
    return text.replace("\u2007", " ").replace("\xa0", " ")


def widget_text(states: dict, model_id: str) -> str | None:
    """Text for the saved state of one widget tree, or None when it contains an interactive widget.

    A tqdm bar (HBox of HTML, FloatProgress, HTML) reads like tqdm's terminal line:
    `Loading weights: 100%|##########| 38/38 [00:00<00:00, 1801.92it/s]`.
    """
    model = states.get(model_id)
    if model is None:
        raise KeyError(f"widget model {model_id} is not in the notebook's saved widget state")
    name, state = model.get("model_name", ""), model.get("state", {})
    if name in INTERACTIVE:
        return None
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
        parts = [widget_text(states, child.removeprefix("IPY_MODEL_")) for child in state.get("children", [])]
        if any(p is None for p in parts):
            return None
        return ("" if name == "HBoxModel" else "\n").join(parts)
    if name in ("FloatProgressModel", "IntProgressModel"):
        low, high, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        filled = round(10 * (value - low) / (high - low)) if high > low else 10
        return "|" + "#" * filled + " " * (10 - filled) + "|"
    if name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
        return _plain(state.get("value", ""))
    return ""


def static_outputs(nb: dict) -> tuple[dict, dict]:
    """The notebook with widget views replaced by text or a note, and its saved widget state removed.

    Cells collapsed in JupyterLab (`"jupyter": {"source_hidden": true}`) get MyST-NB's `hide-input` tag.

    Returns (notebook, counts) where counts says how many views became text and how many became notes.
    """
    states = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    counts = {"text": 0, "note": 0}
    for cell in nb.get("cells", []):
        hidden = cell.get("metadata", {}).get("jupyter", {})
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        for key, tag in (("source_hidden", "hide-input"), ("outputs_hidden", "hide-output")):
            if hidden.get(key) and tag not in tags:
                tags.append(tag)  # a collapsed cell (an exercise's solution) stays collapsed on the site
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            text = widget_text(states, view["model_id"]) if view.get("model_id") in states else None
            if text is None and view.get("model_id") not in states:
                text = "".join(out["data"].get("text/plain", ""))  # no saved state: the kernel's own repr
            if text is None:
                counts["note"] += 1
                outputs.append(
                    {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": INTERACTIVE_NOTE}}
                )
            else:
                counts["text"] += 1
                outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/plain": text}})
        if "outputs" in cell:
            cell["outputs"] = outputs
    nb.get("metadata", {}).pop("widgets", None)
    return nb, counts


def home_page(readme: str, notebooks: list[str]) -> str:
    """The home page: the README with each notebook in its table linked to the notebook's page, then the toctree."""
    lines = []
    for line in readme.splitlines():
        m = NOTEBOOK_ROW.match(line)
        if m and m.group(1) in notebooks:
            line = f"| [{m.group(1)}](notebooks/{m.group(1)}.ipynb) |" + line[m.end() :]
        lines.append(line)
    toctree = ["", "```{toctree}", ":hidden:", ":caption: Notebooks", ""] + [f"notebooks/{n}" for n in notebooks]
    return "\n".join(lines + toctree + ["```", ""])


def build(out: Path, src: Path) -> dict:
    """Write the Sphinx sources to src and the HTML site to out; return what was built."""
    from sphinx.cmd.build import build_main

    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks found in {ROOT / 'notebooks'}")
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    counts = {"text": 0, "note": 0}
    for name in notebooks:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}: line {e.lineno}: not valid notebook JSON ({e.msg})") from e
        nb, c = static_outputs(nb)
        counts = {k: counts[k] + c[k] for k in counts}
        (src / "notebooks" / f"{name}.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [n for n in notebooks if not re.search(rf"^\|\s*`?{n}", readme, re.M)]
    if missing:
        print(f"note: README.md's notebook table has no row for {', '.join(missing)} (still in the navigation)")
    (src / "index.md").write_text(home_page(readme, notebooks), encoding="utf-8")
    if (ROOT / "docs").is_dir():  # images the README shows (docs/quiz.png)
        shutil.copytree(ROOT / "docs", src / "docs")
    start = time.perf_counter()
    rc = build_main(["-b", "html", "-q", "-E", "-c", str(ROOT / "website"), str(src), str(out)])
    if rc:
        raise SystemExit(f"sphinx-build failed with exit code {rc}")
    return {"notebooks": notebooks, "widgets": counts, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="the HTML site (git-ignored)")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "site-src", help="scratch Sphinx sources")
    args = parser.parse_args(argv)
    result = build(args.out.resolve(), args.src.resolve())
    print(
        f"site: {len(result['notebooks'])} notebook pages, {result['widgets']['text']} progress bars as text, "
        f"{result['widgets']['note']} interactive widgets as notes, Sphinx {result['seconds']:.1f} s "
        f"-> {args.out / 'index.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
