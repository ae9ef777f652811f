"""The dashboard pages in a real browser (headless Chromium) against the real server.

One populated platform, one server and one browser for the module. The browser and its driver
come from the machine (Debian's ``chromium`` and ``chromium-driver``): nothing is downloaded at
run time. Without them the tests are skipped locally and fail in CI (``CI`` set).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.serving.dashboard_data import materialize_rain
from tests.serving.live_server import CLOCK_FILE_ENV, live_platform, set_app_clock, wait_for

pytestmark = pytest.mark.integration

VALID = {"vol_moving_avg": "25000", "adj_close_rolling_med": "31.5"}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium driven by the system chromedriver (so Selenium Manager never runs)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = (
            "the browser tests need Debian's chromium and chromium-driver on PATH "
            f"(found chromium={chromium}, chromedriver={chromedriver}): "
            "apt-get install chromium chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard-clock") / "now"


@pytest.fixture(scope="module")
def live(tmp_path_factory, clock_file) -> Iterator[tuple[str, dg.DagsterInstance]]:
    """A populated platform of the module's own, served (snapshot refreshed every 0.5 s), its
    "now" settable (``app_clock``)."""
    env = {"DASHBOARD_REFRESH_SECONDS": "0.5", CLOCK_FILE_ENV: str(clock_file)}
    with live_platform(tmp_path_factory, "dashboard", **env) as pair:
        yield pair


@pytest.fixture
def app_clock(clock_file) -> Iterator[Callable[[datetime], None]]:
    """Sets the served app's "now" (``resources.clock``); the real time again after the test."""
    yield lambda moment: set_app_clock(clock_file, moment)
    set_app_clock(clock_file, None)


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def set_page_clock(browser: WebDriver, moment: datetime) -> None:
    """The open page's ``Date.now()``: what its refresh measures the rows' age against."""
    browser.execute_script(
        "const now = arguments[0]; Date.now = () => now;", moment.timestamp() * 1000
    )


def rain_json(server: str) -> list[dict]:
    response = httpx.get(f"{server}/rain", timeout=10)
    assert response.status_code == 200
    return response.json()


def mm_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def test_rain_page_shows_the_latest_rows_office_first(browser, server, app_clock):
    """Every /rain row is a table row, the office first and highlighted, its next-hour mm
    as /rain says (2 decimals); the stale note hidden while the rows are under 3 minutes old,
    shown past that. Their age is taken on the app's clock, set here: on the wall clock it
    would depend on how long populating the platform and the earlier tests took."""
    rows = rain_json(server)
    assert rows, "the populated platform has rain rows"
    as_of = utc(rows[0]["window_start"])
    app_clock(as_of + timedelta(seconds=90))
    browser.get(f"{server}/")
    shown = browser.find_elements(By.CSS_SELECTOR, "#rain-table tbody tr[data-location]")
    assert len(shown) == len(rows)
    assert [tr.get_attribute("data-location") for tr in shown] == [r["location_id"] for r in rows]
    first = shown[0]
    assert first.get_attribute("data-location") == "office"
    assert "office" in first.get_attribute("class").split()
    office_mm = rows[0]["next_hour_precipitation_mm"]
    assert first.find_element(By.CSS_SELECTOR, "td.mm").text == mm_text(office_mm)
    assert browser.find_element(By.ID, "age").text == "90"
    assert not browser.find_element(By.ID, "stale-note").is_displayed()
    assert browser.find_elements(By.ID, "read-error") == []

    app_clock(as_of + timedelta(minutes=3, seconds=1))
    browser.get(f"{server}/")
    assert browser.find_element(By.ID, "age").text == "181"
    assert browser.find_element(By.ID, "stale-note").is_displayed()


def refresh_rain(browser: WebDriver) -> str:
    """Run the open rain page's refreshRain(); the status line it leaves."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "refreshRain().then(() => done(document.getElementById('rain-status').textContent),"
        "                   (error) => done('refreshRain failed: ' + error));"
    )


def test_rain_page_refreshes_without_reloading(browser, server, platform):
    """A newer minute materialized while the page is open reaches it through the page's own
    refresh (refreshRain(), what its timer calls) without a reload: the status names the new
    minute, the office's mm matches /rain, and a marker set on window survives. The page's
    clock is set, so the stale note follows the rows' age, not how long the test took."""
    browser.get(f"{server}/")
    before = rain_json(server)[0]["window_start"]
    browser.execute_script("window.__noReload = 'still here'")
    navigation_start = browser.execute_script("return performance.timeOrigin")

    materialize_rain(platform, minutes_ago=0)
    rows = wait_for(
        lambda: (r := rain_json(server)) and r[0]["window_start"] != before and r,
        timeout=20,
        what="the snapshot to pick up the new minute",
    )
    new_minute = utc(rows[0]["window_start"])
    assert new_minute > utc(before)

    set_page_clock(browser, new_minute + timedelta(seconds=90))
    status = refresh_rain(browser)
    assert f"For the hour from {new_minute:%Y-%m-%d %H:%M} UTC (90 s ago)" in status
    assert browser.execute_script("return window.__noReload") == "still here"
    assert browser.execute_script("return performance.timeOrigin") == navigation_start
    shown = browser.find_elements(By.CSS_SELECTOR, "#rain-table tbody tr[data-location]")
    assert len(shown) == len(rows)
    assert shown[0].get_attribute("data-location") == "office"
    assert "office" in shown[0].get_attribute("class").split()
    assert shown[0].find_element(By.CSS_SELECTOR, "td.mm").text == mm_text(
        rows[0]["next_hour_precipitation_mm"]
    )
    assert not browser.find_element(By.ID, "stale-note").is_displayed()

    set_page_clock(browser, new_minute + timedelta(minutes=3, seconds=1))
    assert "(181 s ago)" in refresh_rain(browser)
    assert browser.find_element(By.ID, "stale-note").is_displayed()


def test_temperature_page_draws_both_charts(browser, server):
    """/temperature: the actual and predicted lines (one point per hour of the test tables),
    both MSE lines, the published model version and the latest 24 h MSE of /temperature.json."""
    data = httpx.get(f"{server}/temperature.json", timeout=10).json()
    browser.get(f"{server}/temperature")
    forecast = browser.find_element(By.ID, "forecast-chart")
    for series in ("actual", "predicted"):
        lines = forecast.find_elements(By.CSS_SELECTOR, f'polyline.series[data-series="{series}"]')
        assert len(lines) == 1, series
        assert len(lines[0].get_attribute("points").split()) >= 40, series
    mse = browser.find_element(By.ID, "mse-chart")
    for series in ("MSE 24 h", "MSE 7 d"):
        lines = mse.find_elements(By.CSS_SELECTOR, f'polyline.series[data-series="{series}"]')
        assert len(lines) == 1, series
        assert len(lines[0].get_attribute("points").split()) >= 40, series
    assert browser.find_element(By.ID, "model-version").text == "2026-11-21"
    assert data["model_version"] == "2026-11-21"
    mse_24h = browser.find_element(By.ID, "mse-24h").text
    assert float(mse_24h) >= 0
    assert mse_24h == f"{data['accuracy'][-1]['mse_24h']:.3f}"


def fill_and_submit(browser: WebDriver, server: str, values: dict[str, str]) -> None:
    browser.get(f"{server}/volume")
    for name, value in values.items():
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)
    browser.execute_script("window.__formPage = true")  # gone with the page the click replaces
    browser.find_element(By.ID, "predict").click()
    # Polls the window, never an element of the page being replaced: while the documents swap,
    # chromedriver may answer a call on such an element with an error rather than "stale"
    # (seen: HTTP 500 to element/.../enabled); a call failing mid-swap is polled again.
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script(
            "return !window.__formPage && document.readyState === 'complete'"
        )
    )
    assert "/volume?" in browser.current_url  # a GET form: the values are in the URL


def test_volume_form_predicts_like_the_api(browser, server):
    """Submitting the /volume form shows the prediction as a bare integer, the same number
    GET /predict gives for the same parameters."""
    fill_and_submit(browser, server, VALID)
    text = browser.find_element(By.ID, "prediction").text
    assert int(text) > 0
    api = httpx.get(f"{server}/predict", params=VALID, timeout=10)
    assert api.status_code == 200
    assert int(text) == api.json()
    assert browser.find_element(By.ID, "vol_moving_avg").get_attribute("value") == "25000"
    assert browser.find_elements(By.CSS_SELECTOR, ".field-error") == []


def test_volume_form_shows_the_api_errors(browser, server):
    """A negative number and a non-number: each field shows the API's own 422 message naming
    its parameter, and there is no prediction; the page itself answers 422."""
    bad = {"vol_moving_avg": "-5", "adj_close_rolling_med": "abc"}
    fill_and_submit(browser, server, bad)
    assert browser.find_elements(By.ID, "prediction") == []
    errors = {
        e.get_attribute("id"): e.text
        for e in browser.find_elements(By.CSS_SELECTOR, ".field-error")
    }
    assert set(errors) == {"vol_moving_avg-error", "adj_close_rolling_med-error"}
    negative, not_a_number = errors["vol_moving_avg-error"], errors["adj_close_rolling_med-error"]
    assert negative == (
        "query parameter vol_moving_avg: Input should be greater than or equal to 0"
    )
    assert not_a_number.startswith("query parameter adj_close_rolling_med: ")
    assert "valid number" in not_a_number
    api = httpx.get(f"{server}/predict", params=bad, timeout=10)
    assert api.status_code == 422
    assert sorted(e["msg"] for e in api.json()["detail"]) == sorted(errors.values())
    page = httpx.get(f"{server}/volume", params=bad, timeout=10)
    assert page.status_code == 422
    assert 'id="prediction"' not in page.text
