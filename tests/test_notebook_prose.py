"""The prose rule: a number that a notebook's markdown quotes is a number that notebook printed.

Under `--nbval-lax` only `# NBVAL_CHECK_OUTPUT` cells are compared, so a sentence that quotes a result goes
stale on a re-run and nothing notices. This test reads the committed notebooks and checks, for every markdown
cell, every number written with a decimal point or a percent sign ("0.92", "+60.9", "97%", "12.5%"):

- the same number appears in an output of the same notebook (any cell's text output: stream, result, display),
  as a whole number token: "0.92" is found in "held-out 0.92," but not in "0.921" or "10.92";
  a percentage "97%" is found as "97%" (or "97 %"). A unit glued on does not hide a number: "1.2M" and
  "2.5x" are checked as 1.2 and 2.5;
- unless the sentence cites a source outside the notebook, which is exactly one of:
  a paper (`arXiv`, `et al.`, a link `http://` / `https://`, or a parenthesis that ends in a year, as in
  "(Allen-Zhu & Li, 2023)"), or another notebook by name
  (`notebook 03`, `notebooks 03`, Korean `노트북 03`, or a file stem such as `03_sft_loop`, of a number other
  than its own).

Code is not prose: numbers inside `inline code` and fenced code blocks are not checked. Sentences are split at
". ", "! ", "? " before a capital letter (so "et al. 2023" and "e.g. this" stay whole), at line breaks that
start a list item, a table row or a heading, and at blank lines.
A failure names the notebook, the markdown cell (counted from 0 among all cells) and the number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# A number with a decimal point (digits on both sides) or a percent sign; not part of a longer number or word.
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d+\.\d+)(?!\d|\.\d)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[*_\"])|\n\s*\n|\n(?=\s*(?:[-*+]\s|\d+\.\s|\||#))")
PAPER = re.compile(r"arXiv|\bet al\.|https?://|\([^()]*\b(?:19|20)\d\d\)", re.IGNORECASE)
NOTEBOOK_REF = re.compile(r"(?:\bnotebooks?|노트북)\s*(\d\d)(?!\d)|\b(\d\d)_[a-z]\w*", re.IGNORECASE)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_text(notebook: dict) -> str:
    """Every text output of every code cell, joined: what a learner sees printed."""
    parts = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                parts.append(_text(output.get("text", "")))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append(_text(value))
    return "\n".join(parts)


def cites_outside(sentence: str, own_number: str | None) -> bool:
    """True when `sentence` cites a paper or a notebook other than the one numbered `own_number`."""
    if PAPER.search(sentence):
        return True
    return any((m.group(1) or m.group(2)) != own_number for m in NOTEBOOK_REF.finditer(sentence))


def _printed(number: str, printed: str) -> bool:
    if number.endswith("%"):
        pattern = re.escape(number[:-1].strip()) + r"\s?%"
    else:
        pattern = re.escape(number)
    return re.search(rf"(?<![\d.]){pattern}(?!\d|\.\d)", printed) is not None


def unprinted_numbers(notebook: dict, own_number: str | None = None) -> list[tuple[int, str]]:
    """`(cell index, number)` for each number in a markdown cell that no output of `notebook` shows."""
    printed = output_text(notebook)
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        prose = CODE.sub(" ", _text(cell.get("source", "")))
        for sentence in SENTENCE_BREAK.split(prose):
            if cites_outside(sentence, own_number):
                continue
            for number in NUMBER.findall(sentence):
                if not _printed(number, printed):
                    found.append((index, number))
    return found


def violations(path: Path) -> list[str]:
    """One line per unprinted number of the notebook at `path`: notebook, cell, number."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    own = path.stem[:2] if path.stem[:2].isdigit() else None
    return [
        f"{path.name}: markdown cell {index}: {number!r} is not in any output"
        for index, number in unprinted_numbers(notebook, own)
    ]


# The checker itself, on small hand-made notebooks.


def _nb(markdown: str, printed: str = "") -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "source": "print(x)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}],
            },
            {"cell_type": "markdown", "source": markdown},
        ]
    }


def test_a_quoted_printed_number_passes():
    assert unprinted_numbers(_nb("Held-out accuracy reached 0.92, and 97% stopped.", "acc 0.92\nstop 97%\n")) == []


def test_a_number_printed_only_in_a_result_output_passes():
    nb = _nb("It scored 0.500.")
    nb["cells"][0]["outputs"] = [{"output_type": "execute_result", "data": {"text/plain": "0.500"}}]
    assert unprinted_numbers(nb) == []


@pytest.mark.parametrize(
    "markdown, printed",
    [
        ("Accuracy was 0.92.", "accuracy 0.921\n"),  # a rounded quote is not the printed number
        ("Accuracy was 0.9.", "accuracy 0.918\n"),  # a prefix of a printed number does not count
        ("Accuracy was 0.92.", "accuracy 10.92\n"),
        ("About 95% of answers.", "0.95\n"),  # a percentage must be printed as one
        ("Perplexity rose by +60.9 points.", ""),
        ("It is 2.5x faster.", "speed-up 2.6x\n"),
    ],
)
def test_a_number_not_printed_is_found(markdown, printed):
    assert [n for _, n in unprinted_numbers(_nb(markdown, printed))] != []


def test_the_failure_names_the_cell_and_the_number():
    assert unprinted_numbers(_nb("First 0.75 then 12.5%.", "0.75\n")) == [(1, "12.5%")]


@pytest.mark.parametrize(
    "sentence",
    [
        "GPT-2-size models reached about 96% (Allen-Zhu & Li, arXiv 2309.14316).",
        "LIMA (Zhou et al. 2023) used 1,000 examples and reported 43% preference.",
        "See https://example.org/report for the 3.5 figure.",
        "In Physics of Language Models (Allen-Zhu & Li, 2023) they reached 96%.",
        "Notebook 03 reached 0.92 with the same loop.",
        "The loop in 03_sft_loop reached 0.92.",
        "노트북 04에서 LoRA는 0.98에 도달했습니다.",
    ],
)
def test_a_sentence_citing_a_source_outside_the_notebook_is_exempt(sentence):
    assert unprinted_numbers(_nb(f"Our run printed nothing. {sentence} We go on.")) == []


def test_the_exemption_covers_only_the_citing_sentence():
    assert unprinted_numbers(_nb("Notebook 03 reached 0.92. Here we reach 0.85.")) == [(1, "0.85")]


def test_citing_the_notebook_itself_is_no_exemption():
    assert unprinted_numbers(_nb("Notebook 04 reached 0.85.", ""), own_number="04") == [(1, "0.85")]


def test_code_spans_and_list_items_are_handled():
    markdown = "Install `torch==2.13.0`:\n```\npip install x==1.2\n```\n- a list item at 0.5\n- one at 0.25"
    assert [n for _, n in unprinted_numbers(_nb(markdown, "0.25\n"))] == ["0.5"]


def test_plain_integers_and_words_are_not_numbers():
    assert unprinted_numbers(_nb("We train 120 steps on 1000 people with r=8, v2 and section 3.")) == []


# The committed notebooks.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_printed(path):
    found = violations(path)
    assert not found, "\n  ".join([f"{path.name}: numbers in markdown that no output shows:", *found])
