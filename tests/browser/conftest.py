"""Playwright driving Debian's Chromium, headless, against pytest-django's live server.

The tests are skipped, saying why, only when Chromium or Playwright is missing; CI installs
both (``.ci/install-browser.sh`` and the ``browser`` extra). Chromium is looked for as
``$MAILROOM_CHROMIUM``, then ``chromium`` on the PATH, then ``/usr/bin/chromium``. Screenshots
go to ``tests/browser/artifacts/`` (not in git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import django.contrib.admin
import pytest
from django.test.utils import override_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("MAILROOM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
PASSWORD = "correct horse battery staple"

# Playwright's sync API keeps an event loop in this thread, which makes Django refuse database
# work from the test body ("SynchronousOnlyOperation"). The test body only prepares and checks
# rows, always between browser calls, so the check is lifted for this process.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install '.[browser]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (run .ci/install-browser.sh)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_server(live_server_static: None, live_server: Any) -> Any:
    """pytest-django's live server, started once the admin's static files can be served."""
    return live_server


@pytest.fixture(scope="session")
def live_server_static() -> Iterator[None]:
    # The test settings have no STATIC_URL (nothing else renders pages); the live server's
    # static handler reads it when the server starts, and serves STATIC_ROOT under it, so
    # the browser gets the admin's CSS and JavaScript without django.contrib.staticfiles.
    with override_settings(STATIC_URL="/static/", STATIC_ROOT=str(ADMIN_STATIC)):
        yield


@pytest.fixture
def admin_page(browser: Browser, live_server: Any, django_user_model: Any) -> Iterator[Page]:
    """A browser page logged in to the admin, through its login form, as a superuser."""
    django_user_model.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000}, base_url=live_server.url
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert "Site administration" in page.title()
    yield page
    context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """Save a screenshot (full page by default) as ``artifacts/<test name>--<step>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page: Page, step: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{request.node.name}--{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
