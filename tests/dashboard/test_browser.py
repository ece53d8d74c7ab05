"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Starts ``streamlit run`` as a subprocess against a live fixture store, checks that the charts
and every site render, that a new round appears without reloading the page, and saves a
screenshot to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium.store.records import RoundRecord
from consortium.store.run_store import RunStore
from policies.loader import load_policy
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, CHROMIUM_MISSING, ROOT, serve
from tests.dashboard.stores import SITE_NAMES, SITES, site_record

log = logging.getLogger(__name__)

ARTIFACTS = ROOT / "artifacts"
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_MISSING),
]


@pytest.fixture
def server(live_store: Path, tmp_path: Path) -> Iterator[str]:
    """The dashboard served on a free local port; always stopped afterwards."""
    with serve(live_store, tmp_path) as url:
        yield url


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(CHART, timeout=20_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=20_000)


def _chart_texts(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Text drawn inside the charts (titles, axes, legends); Streamlit renders them as SVG."""
    return [t.strip() for t in page.locator('[data-testid="stVegaLiteChart"] svg text')
            .all_text_contents()]


def _add_round(store: Path, rnd: int) -> None:
    with RunStore(store) as writer:
        writer.record_round("run-live", RoundRecord(
            round=rnd, status="ok", started_at="2025-01-05T10:04:00+00:00",
            finished_at="2025-01-05T10:05:00+00:00", duration_s=60.0, accuracy_mean=0.7,
            accuracy_weighted=0.71, loss_mean=0.5, loss_weighted=0.5,
            sites=tuple(site_record(s, rnd) for s in SITES)))


def test_dashboard_in_chromium(server: str, live_store: Path) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            page.goto(server, timeout=30_000)
            page.get_by_role("heading", name="Overview").wait_for(timeout=20_000)
            _settle(page)
            assert page.locator('[data-testid="stVegaLiteChart"]').count() == 3
            drawn = _chart_texts(page)
            assert {"Global accuracy", "Global loss", "Accuracy at each site"} <= set(drawn)
            assert set(SITE_NAMES) <= set(drawn)  # the site chart's legend
            for name in SITE_NAMES:
                assert page.get_by_text(name, exact=True).first.is_visible(), name
            assert page.get_by_text("3 / 10").is_visible()

            _add_round(live_store, 4)  # the live fragment shows it without a reload
            page.get_by_text("4 / 10").wait_for(timeout=15_000)
            _settle(page)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.goto(f"{server}/privacy", timeout=30_000)
            page.get_by_role("heading", name="Privacy budget").wait_for(timeout=20_000)
            _settle(page)
            assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1
            drawn = _chart_texts(page)
            ceiling = f"ceiling ε = {load_policy().policy.epsilon_ceiling:g}"
            assert "Cumulative privacy loss ε per site" in drawn and ceiling in drawn
            assert set(SITE_NAMES) <= set(drawn)
            assert page.get_by_text("linear estimate", exact=False).is_visible()
            for name in SITE_NAMES:
                assert page.get_by_text(name, exact=True).first.is_visible(), name
            page.screenshot(path=str(ARTIFACTS / "dashboard-privacy.png"), full_page=True)
        finally:
            browser.close()
