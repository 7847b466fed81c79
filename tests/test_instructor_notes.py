"""docs/instructor.md quotes only figures that something printed or recorded, and covers every notebook.

A number with a decimal point or a percent sign in the notes must appear in a committed notebook's outputs or in
benchmarks/workshop.json (the figures measured for the notes, each with its command), unless its line cites a
paper ("Part 3.1").
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTES = (ROOT / "docs" / "instructor.md").read_text(encoding="utf-8")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?%|(?<![\w.])\d+\.\d+(?![\w.])")


def printed_text() -> str:
    parts = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for output in cell.get("outputs", []):
                parts.append("".join(output.get("text", "")))
                parts.append("".join(output.get("data", {}).get("text/plain", "")))
    parts.append((ROOT / "benchmarks" / "workshop.json").read_text(encoding="utf-8"))
    return "\n".join(parts)


def test_every_figure_in_the_notes_is_printed_or_recorded():
    printed = printed_text()
    missing, fenced = [], False
    for number_line in NOTES.splitlines():
        if number_line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or re.search(r"Part \d", number_line):
            continue
        prose = re.sub(r"Python \d+\.\d+", "", re.sub(r"`[^`]*`", "", number_line))  # code and versions
        for number in NUMBER.findall(prose):
            if not re.search(rf"(?<![\d.]){re.escape(number)}", printed):
                missing.append(f"{number} in: {number_line.strip()[:90]}")
    assert missing == [], "figures in docs/instructor.md that nothing prints or records:\n" + "\n".join(missing)


def test_the_notes_cover_every_notebook_and_the_checklist():
    for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        assert f"`{path.stem}`" in NOTES, f"the schedule has no row for {path.stem}"
        assert re.search(rf"^### {path.stem[:2]} · ", NOTES, re.MULTILINE), f"no section for {path.stem}"
    for needed in ("check-setup", "make wheelhouse", "USB", "## Slow laptops"):
        assert needed in NOTES


def test_the_schedules_run_times_are_the_recorded_ci_times():
    recorded = json.loads((ROOT / "benchmarks" / "workshop.json").read_text())["ci_notebook_seconds"]
    for name, seconds in recorded["notebooks"].items():
        assert re.search(rf"\| `{name}` \| {seconds} s \|", NOTES), f"the schedule's time for {name}"
