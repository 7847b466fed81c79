"""Real-browser checks (`make test-browser`): headless Chromium from the system, driven by Playwright.

Kept out of `pytest tests` and `make test`: they need Chromium and a built site (`make site`).
Screenshots of every check go to build/browser-screenshots/ (git-ignored), so a failure can be looked at.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("SITE_DIR", ROOT / "build" / "site"))
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "build" / "browser-screenshots"))
INSTALL_HINT = (
    "make test-browser needs Chromium: install it with `apt-get install -y chromium` (Debian/Ubuntu), "
    "or set CHROMIUM=/path/to/chromium"
)


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


def pytest_sessionstart(session):
    if chromium_path() is None:
        pytest.exit(INSTALL_HINT, returncode=1)


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: Chromium refuses to start its sandbox as root, which is how CI and containers run.
        # --disable-dev-shm-usage: containers often have a tiny /dev/shm, which crashes Chromium's renderers.
        b = p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def site_url():
    """The built site, served over HTTP on a free port of the loopback interface."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"no site at {SITE}: run `make site` first")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=SITE))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
