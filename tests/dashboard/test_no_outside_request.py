"""No request leaves the dashboard's host: a real browser (Debian's chromium driven by
Playwright) loads every page of the dashboard, records every request and web socket it opens,
and each must go to the dashboard's own host and port.

Requests to any other host are recorded and then aborted, so the test itself sends nothing out.
Before the fix, the page icon ``:material/local_hospital:`` made every page load fetch
``https://fonts.gstatic.com/s/i/short-term/release/materialsymbolsrounded/...``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, CHROMIUM_MISSING, serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_MISSING),
]

#: Every page of the dashboard: its URL path and its heading.
PAGES = (("", "Overview"), ("privacy", "Privacy budget"),
         ("participation", "Participation and secure aggregation"),
         ("comparison", "Local versus federated"), ("audit", "Audit"))
#: Schemes that are no request to any host.
LOCAL_SCHEMES = {"data", "blob", "about"}


def _outside(urls: list[str], origin: str) -> list[str]:
    """The URLs that go anywhere but ``origin`` (a ``ws`` URL of the same host and port is the
    dashboard's own stream)."""
    own = urlsplit(origin).netloc
    return [u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES
            and urlsplit(u).netloc != own]


def test_every_page_requests_only_the_dashboards_own_host(audited_store: Path,
                                                           tmp_path: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    seen: list[str] = []
    with serve(audited_store, tmp_path) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1600})
            context.on("request", lambda request: seen.append(request.url))

            def _abort_outside(route: Route) -> None:
                if _outside([route.request.url], url):
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", _abort_outside)
            page = context.new_page()
            page.on("websocket", lambda ws: seen.append(ws.url))
            for path, heading in PAGES:
                page.goto(f"{url}/{path}", timeout=30_000)
                page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
                page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached",
                                       timeout=30_000)
                page.wait_for_timeout(1500)  # the page icon is set after the page's first run
            assert page.get_by_text("Audit trail verified").first.is_visible()
        finally:
            browser.close()
    assert any(u.startswith(("ws://", "wss://")) for u in seen), "the page stream was not seen"
    assert len(seen) > len(PAGES)
    assert _outside(seen, url) == []
