"""The static site in Chromium: every page loads without a console error, every figure decodes, search answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGES = ["index.html", "search.html", "genindex.html"] + [f"notebooks/{n}.html" for n in NOTEBOOKS]


def figure_count(name: str) -> int:
    """Image outputs in the committed notebook: each must be an image on its page."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return sum(
        any(k.startswith("image/") for k in out.get("data", {}))
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
    )


def open_page(page, url: str) -> list[str]:
    """Load url and return every console error, uncaught page error, failed request and HTTP error."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return problems


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_without_errors_and_its_figures_decode(page, site_url, shots, path):
    problems = open_page(page, f"{site_url}/{path}")
    # Scroll through the page so that anything loaded on view is loaded, then back to the top.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=shots / f"site_{path.replace('/', '_').removesuffix('.html')}.png", full_page=True)
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}))"
    )
    assert problems == []
    assert [i["src"] for i in images if not i["ok"]] == [], "images that did not decode"
    if path.startswith("notebooks/"):
        name = path.removeprefix("notebooks/").removesuffix(".html")
        figures = page.locator(".cell_output img").count()
        assert figures == figure_count(name), f"{name}: {figures} figures on the page"
        assert page.locator("h1").first.inner_text().strip()


def test_home_page_links_every_notebook_from_its_table_and_its_navigation(page, site_url, shots):
    assert open_page(page, f"{site_url}/index.html") == []
    assert page.get_by_role("heading", name="Quick start").count() == 1
    for name in NOTEBOOKS:
        assert page.locator(f'nav a[href="notebooks/{name}.html"]').count() >= 1, f"{name} not in the navigation"
    linked = [n for n in NOTEBOOKS if page.locator(f'table a[href="notebooks/{n}.html"]').count()]
    assert linked, "the notebook table links no notebook"
    page.locator(f'table a[href="notebooks/{linked[-1]}.html"]').first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"notebooks/{linked[-1]}.html")
    page.screenshot(path=shots / "site_home_link_followed.png")


def test_search_finds_the_notebooks(page, site_url, shots):
    assert open_page(page, f"{site_url}/search.html?q=LoRA") == []
    results = page.locator("#search-results li")
    results.first.wait_for(timeout=30_000)
    page.screenshot(path=shots / "site_search_lora.png", full_page=True)
    hrefs = results.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any("04_lora_vs_full" in h for h in hrefs), hrefs


def test_quiz_page_shows_the_plain_text_quiz_where_no_widget_can_run(page, site_url, shots):
    assert open_page(page, f"{site_url}/notebooks/06_interview_prep.html") == []
    output = page.locator(".cell_output", has_text="Q1.").first
    output.scroll_into_view_if_needed()
    text = output.inner_text()
    assert "Q1." in text and "(a)" in text and "(b)" in text
    assert page.get_by_text("Interactive widget: in JupyterLab").count() == 1
    assert page.locator("input[type=radio]").count() == 0
    output.screenshot(path=shots / "site_quiz_plain_text.png")
