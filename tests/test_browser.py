"""The pages in a real browser: Debian's chromium driven by selenium, against a real
`feedsvc serve` of the bundled site.  What a person meets: no console errors, no
accessibility violations (axe-core), the Persian article laid out right to left, the
copy button copying a feed address.

Needs chromium and chromium-driver (`apt-get install chromium chromium-driver`) and
axe-core from npm (`npm install --prefix .ci/axe axe-core@4`, or FEEDSVC_AXE_JS naming
its axe.min.js).  Without them the tests skip, saying why; FEEDSVC_REQUIRE_BROWSER=1
(set by .ci/run) turns that skip into a failure.  Nothing is loaded from a CDN and no
screenshot is written.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import BUNDLED

ROOT = Path(__file__).resolve().parent.parent
AXE = Path(os.environ.get("FEEDSVC_AXE_JS")
           or ROOT / ".ci" / "axe" / "node_modules" / "axe-core" / "axe.min.js")
# read at import: conftest's clean_environment removes FEEDSVC_* before each test
REQUIRED = os.environ.get("FEEDSVC_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PERSIAN = "/articles/tehran-and-muscat-discuss-shipping-safety/"
ARTICLE = "/articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/"
PAGES = ["/", "/category/hard-news/", ARTICLE, PERSIAN, "/category/hard-news/subscribe/",
         "/categories/", "/no-such-page/"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1024,768"]


def _missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium or chromedriver missing (apt-get install chromium chromium-driver)"
    if not AXE.is_file():
        return f"axe-core not found at {AXE} (npm install --prefix .ci/axe axe-core@4)"
    return ""


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why:
        if REQUIRED:
            pytest.fail(f"FEEDSVC_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def site(serve, tmp_path):
    """The bundled site served by `feedsvc serve`, linking to the address it serves."""
    return serve(BUNDLED, workers=1, state_dir=tmp_path / "state")


def _open(browser, url: str) -> None:
    browser.get(url)
    browser.get_log("browser")          # what an earlier page logged is not this one's


def _errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _axe(browser) -> list[dict]:
    browser.execute_script(AXE.read_text("utf-8"))
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations), e => done([{id: String(e)}]));")
    return [{"id": v["id"], "nodes": [n.get("target") for n in v.get("nodes", [])]}
            for v in result]


@pytest.mark.e2e
def test_pages_show_no_console_errors_and_pass_axe(browser, site):
    for path in PAGES:
        _open(browser, site.url + path)
        assert browser.find_elements("css selector", "main h1"), path
        assert _errors(browser) == [], path
        assert _axe(browser) == [], path


@pytest.mark.e2e
def test_the_persian_article_reads_right_to_left(browser, site):
    _open(browser, site.url + PERSIAN)
    html = browser.find_element("css selector", "html")
    assert html.get_attribute("lang") == "fa" and html.get_attribute("dir") == "rtl"
    body = browser.find_element("css selector", "article p:last-of-type")
    assert body.value_of_css_property("direction") == "rtl"
    # on the English index its title keeps its own direction beside a Latin date
    _open(browser, site.url + "/")
    title = browser.find_element("css selector", f'main a[href$="{PERSIAN}"] bdi')
    assert title.get_attribute("lang") == "fa"
    assert browser.execute_script(
        "return getComputedStyle(arguments[0]).unicodeBidi", title) == "isolate"
    assert browser.execute_script(
        "return arguments[0].matches(':dir(rtl)')", title) is True
    english = browser.find_element("css selector", f'main a[href$="{ARTICLE}"] bdi')
    assert browser.execute_script("return arguments[0].matches(':dir(ltr)')", english) is True


@pytest.mark.e2e
def test_the_copy_button_copies_the_feed_address(browser, site):
    page = site.url + "/category/hard-news/subscribe/"
    _open(browser, page)
    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": site.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    address = browser.find_element("id", "address-atom").get_attribute("value")
    assert address == site.url + "/feeds/category/hard-news.atom"
    button = browser.find_element("css selector", 'button[data-copy="address-atom"]')
    assert button.is_displayed()                # the script shows the buttons
    button.click()
    status = browser.find_element("id", "address-atom-status")
    for _ in range(50):                         # bounded: about 5 s
        if status.text:
            break
        browser.execute_script("return new Promise(r => setTimeout(r, 100))")
    assert status.text == "Copied"
    copied = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done('error: ' + e));")
    assert copied == address
    assert _errors(browser) == []
