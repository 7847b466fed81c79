"""The quiz of notebook 06 in a real JupyterLab, started by `make lab`, answered in headless Chromium.

Only the quiz cell runs (it needs no model). JupyterLab gets a scratch settings folder with autosave off, so
the committed notebook is never written; the test checks that its bytes did not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "06_interview_prep.ipynb"
QUIZ_MARK = "from sft_course.quiz import QuizQuestion, show_quiz"
START_TIMEOUT_S = 240
RUN_TIMEOUT_MS = 240_000  # the quiz cell imports sft_course (and so torch and transformers): slow on a busy CPU


def quiz_from_notebook():
    """QUIZ as the committed quiz cell defines it, and its source."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    source = next((s for s in sources if QUIZ_MARK in s), None)
    assert source is not None, f"{NOTEBOOK.name}: no code cell contains {QUIZ_MARK!r}"
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):  # outside a kernel show_quiz only prints
        exec(compile(source, f"{NOTEBOOK.name}:quiz cell", "exec"), scope)
    return scope["QUIZ"], source


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> Path:
    """JupyterLab user settings for the test: no autosave (the notebook stays as committed), no news fetch."""
    for plugin, values in {
        "docmanager-extension/plugin": {"autosave": False},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = folder / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab started exactly as a learner starts it, `make lab`, with test options in LAB_ARGS."""
    tmp = tmp_path_factory.mktemp("lab")
    port = _free_port()
    args = (
        f"--no-browser --port={port} --ServerApp.port_retries=0 "
        f"--LabApp.user_settings_dir={_settings(tmp / 'settings')} --LabApp.workspaces_dir={tmp / 'workspaces'}"
    )
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    before = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    log_path = tmp / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    printed = re.compile(rf"http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]{{16,}})")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := printed.search(log_path.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"`make lab` printed no URL with its token for port {port} (exit code {proc.poll()}):\n"
                    + log_path.read_text()[-3000:]
                )
            time.sleep(0.5)
        yield {"base": f"http://127.0.0.1:{port}", "token": found.group(1), "log": log_path}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == before, f"JupyterLab wrote {NOTEBOOK}"


def test_make_lab_prints_its_url_with_the_token_and_serves_as_this_user(lab):
    log = lab["log"].read_text()
    assert re.search(rf"http://127\.0\.0\.1:\d+/lab\?token={lab['token']}", log)
    if os.getuid() == 0:
        assert "--allow-root" in log or "running as root" in log
    import urllib.request

    with urllib.request.urlopen(f"{lab['base']}/api/status?token={lab['token']}", timeout=30) as r:
        assert r.status == 200


def _scroll_to_cell(page, text: str):
    """The cell whose input contains text, scrolled into view: JupyterLab 4 renders far-down cells lazily."""
    cell = page.locator(".jp-Notebook .jp-Cell", has=page.locator(".jp-InputArea", has_text=text))
    scroller = page.locator(".jp-WindowedPanel-outer").first
    for _ in range(200):
        if cell.count() and cell.first.is_visible():
            break
        scroller.evaluate("el => el.scrollBy(0, el.clientHeight * 0.8)")
        page.wait_for_timeout(150)
    assert cell.count() == 1, f"no cell with {text!r} after scrolling the notebook"
    cell.first.scroll_into_view_if_needed()
    # Pinned by its place in the notebook, not by its text: CodeMirror drops the lines of a tall cell that scroll
    # out of view (Shift+Enter moves on to the next cell), so a text locator stops matching the very cell it found.
    index = cell.first.get_attribute("data-windowed-list-index")
    assert index is not None, "JupyterLab's cells carry no data-windowed-list-index"
    return page.locator(f'.jp-Notebook .jp-Cell[data-windowed-list-index="{index}"]')


def _run(page, cell):
    cell.locator(".jp-InputPrompt").first.click()  # select the cell (command mode)
    page.keyboard.press("Shift+Enter")


def test_the_quiz_widget_renders_and_answers(lab, page, shots):
    quiz, _ = quiz_from_notebook()
    page.set_default_timeout(60_000)
    page.goto(f"{lab['base']}/lab/tree/06_interview_prep.ipynb?token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)

    cell = _scroll_to_cell(page, QUIZ_MARK)
    _run(page, cell)
    cell.locator(".jp-InputPrompt", has_text="[1]").wait_for(timeout=RUN_TIMEOUT_MS)
    radios = cell.locator(".jp-OutputArea input[type=radio]")
    radios.first.wait_for(timeout=60_000)
    assert radios.count() == sum(len(q.options) for q in quiz)
    # the plain-text version is printed above the widgets, for paper and for viewers without widgets
    assert "Q1. " + quiz[0].prompt in cell.locator(".jp-OutputArea").inner_text()

    questions = cell.locator(".jp-OutputArea .widget-vbox .widget-vbox")  # one box per question
    first, second = questions.nth(0), questions.nth(1)
    first.locator(".widget-radio-box label").nth(quiz[0].answer).click()
    first.get_by_role("button", name="Check").click()
    page.wait_for_function(
        "([el, t]) => el.innerText.includes(t)", arg=[first.element_handle(), "Correct. " + quiz[0].explanation[:40]]
    )
    wrong = (quiz[1].answer + 1) % len(quiz[1].options)
    second.locator(".widget-radio-box label").nth(wrong).click()
    second.get_by_role("button", name="Check").click()
    expected = f"Not quite: the answer is ({'abcdefgh'[quiz[1].answer]})."
    page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[second.element_handle(), expected])
    cell.get_by_role("button", name="Score").click()
    page.wait_for_function(
        "([el, t]) => el.innerText.includes(t)", arg=[cell.element_handle(), f"1 / {len(quiz)} correct"]
    )
    first.scroll_into_view_if_needed()
    page.screenshot(path=shots / "lab_quiz_answered.png")
    cell.locator(".jp-OutputArea").screenshot(path=shots / "lab_quiz_output.png")

    # A kernel without ipywidgets: the same call prints the plain-text quiz and shows no widget.
    page.keyboard.press("Escape")
    cell.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("b")  # a new cell below, never saved (autosave is off)
    page.keyboard.press("Enter")
    page.keyboard.insert_text('import sys\nsys.modules["ipywidgets"] = None  # ipywidgets unavailable\nshow_quiz(QUIZ)')
    page.keyboard.press("Shift+Enter")
    fallback = page.locator(
        ".jp-Notebook .jp-Cell", has=page.locator(".jp-InputArea", has_text="ipywidgets unavailable")
    )
    fallback.locator(".jp-InputPrompt", has_text="[2]").wait_for(timeout=60_000)
    fallback.locator(".jp-OutputArea", has_text="Q1. ").wait_for()
    out = fallback.locator(".jp-OutputArea")
    assert "(a) " + quiz[0].options[0] in out.inner_text()
    assert out.locator("input[type=radio]").count() == 0
    fallback.scroll_into_view_if_needed()
    page.screenshot(path=shots / "lab_quiz_plain_text_fallback.png")
