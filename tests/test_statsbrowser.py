"""The statistics page in a real browser (chromium, as tests/test_browser.py sets it up):
logged in through the form, charts drawn, no console error (a CSP refusal is one), no
accessibility violation, readable at a phone's width."""
from __future__ import annotations

import pytest
import requests
from conftest import BUNDLED
from test_browser import _axe, _errors, _open, browser  # noqa: F401 - the fixture

from feedsvc import admin
from feedsvc.store import open_admin

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 40 subscribers; )"


@pytest.fixture
def counted(serve, tmp_path):
    """The bundled site served with a password set and a few counted polls."""
    state = tmp_path / "state"
    admin.set_password(open_admin(str(state)), PASSWORD)
    srv = serve(BUNDLED, workers=1, state_dir=state, feedsvc_stats_flush_seconds="0.2")
    for ua in (FEEDLY, "Mozilla/5.0 (compatible; Miniflux/2.0.50; +https://miniflux.app)"):
        requests.get(srv.url + "/feeds/all.rss", headers={"User-Agent": ua}, timeout=10)
    return srv


def _login(browser, url: str) -> None:  # noqa: F811 - the fixture's name
    from selenium.webdriver.common.by import By

    _open(browser, url + "/admin/stats")
    assert browser.current_url.endswith("/admin/login")        # not logged in yet
    assert _axe(browser) == [] and _errors(browser) == []
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    _arrive(browser, "/admin/stats")


def _arrive(browser, path: str) -> None:  # noqa: F811 - the fixture's name
    """Wait for a form's POST and its redirect to land on `path` (a click returns before
    the navigation ends; opening another URL meanwhile would cancel the POST)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda b: b.current_url.endswith(path))


def test_the_stats_page_in_a_browser(browser, counted):  # noqa: F811
    from selenium.webdriver.common.by import By

    _login(browser, counted.url)
    for width in (1024, 390):
        browser.set_window_size(width, 900)
        _open(browser, counted.url + "/admin/stats?days=7")
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 2
        assert all(0 < c.size["width"] <= width for c in charts)
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= width, "the page scrolls sideways"
        assert _errors(browser) == []
    found = _axe(browser)
    assert found == [], found
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Feedly" in text and "feeds/all" in text
    browser.find_element(By.CSS_SELECTOR, "nav form button").click()    # log out
    _arrive(browser, "/admin/login")
    _open(browser, counted.url + "/admin/stats")
    assert browser.current_url.endswith("/admin/login")
