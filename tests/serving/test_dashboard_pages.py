"""The dashboard pages and JSON twins through TestClient: a fresh platform, then a populated
one; the /volume form gives exactly /predict's answers and validation messages."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import pytest
from fastapi.testclient import TestClient

from resources import clock
from serving import warehouse_snapshot
from serving.app import create_app
from tests.serving.dashboard_data import BAD_REQUESTS, GOOD_REQUESTS, populate


@pytest.fixture
def fresh_client(platform_env):
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One populated platform and one app for the module (populating takes seconds)."""
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        for name in ("SOURCE_MODE", "S3_BUCKET", "S3_ENDPOINT_URL", "WAREHOUSE_PATH"):
            env.delenv(name, raising=False)
        env.setenv("DATA_DIR", str(tmp_path_factory.mktemp("dashboard") / "data"))
        populate(instance)
        with TestClient(create_app()) as client:
            yield client


def test_a_fresh_machine_gets_pages_that_say_there_is_no_data_yet(fresh_client):
    page = fresh_client.get("/")
    assert page.status_code == 200 and "No next-hour totals yet" in page.text
    assert "Last warehouse read failed" in page.text  # the warehouse file does not exist yet
    assert fresh_client.get("/rain").json() == []
    assert fresh_client.get("/rain").headers["X-Data-Stale"] == "true"
    temperature = fresh_client.get("/temperature")
    assert temperature.status_code == 200 and "no data yet" in temperature.text
    volume = fresh_client.get("/volume", params={"vol_moving_avg": 1, "adj_close_rolling_med": 2})
    assert volume.status_code == 503 and "no volume model yet" in volume.text


def test_public_pages_show_no_file_paths(fresh_client, platform_env, monkeypatch):
    """The failed warehouse read (its message names the file) is on the pages generically."""
    for path in ("/", "/temperature", "/temperature.json", "/rain", "/health", "/volume"):
        response = fresh_client.get(path)
        assert str(platform_env) not in response.text, path
    assert "does not exist yet" in fresh_client.get("/").text

    def locked(*args: object, **kwargs: object) -> None:
        raise duckdb.IOException(
            f'Could not set lock on file "{platform_env}/w.duckdb": Conflicting lock is held in '
            "/usr/bin/python3 (PID 31337)"
        )

    monkeypatch.setattr(warehouse_snapshot, "read_snapshot", locked)
    fresh_client.app.state.snapshots.refresh()
    for path in ("/", "/temperature", "/temperature.json"):
        text = fresh_client.get(path).text
        assert "busy" in text and "31337" not in text and str(platform_env) not in text, path


def stale_note_shown(page: str) -> bool:
    return "hidden" not in re.search(r'<p class="stale" id="stale-note"[^>]*>', page).group(0)


def test_rain_page_and_json_show_the_same_latest_minute(client, monkeypatch):
    data = client.get("/rain").json()
    assert len(data) > 1 and data[0]["location_id"] == "office"
    assert len({row["window_start"] for row in data}) == 1
    assert set(data[0]) == {
        "location_id", "name", "lat", "lon", "window_start",
        "next_hour_precipitation_mm", "minutes_covered", "answered_at",
    }  # fmt: skip
    assert data[0]["answered_at"] is None  # warehouse rows: only the real-time view has it
    # How old the rows are is measured on the clock the app reads, set here: the wall clock
    # would make it depend on how long populating and the earlier tests took.
    as_of = datetime.fromisoformat(data[0]["window_start"])
    monkeypatch.setattr(clock, "utcnow", lambda: as_of + timedelta(seconds=90))
    rows = client.get("/rain")
    assert rows.json() == data
    assert rows.headers["X-Data-Stale"] == "false" and rows.headers["X-Data-Age-Seconds"] == "90"
    page = client.get("/").text
    assert page.count('data-location="') == len(data)
    office = data[0]["next_hour_precipitation_mm"]
    assert f'<td class="num mm">{office:.2f}</td>' in page
    assert '<span id="age">90</span> s ago' in page and not stale_note_shown(page)

    # The same rows just past 3 minutes: stale, in the headers and on the page.
    monkeypatch.setattr(clock, "utcnow", lambda: as_of + timedelta(minutes=3, seconds=1))
    rows = client.get("/rain")
    assert rows.headers["X-Data-Stale"] == "true" and rows.headers["X-Data-Age-Seconds"] == "181"
    assert stale_note_shown(client.get("/").text)


def test_temperature_page_and_json(client):
    data = client.get("/temperature.json").json()
    assert data["model_version"] == "2026-11-21"
    assert data["points"][-1]["actual_c"] is None and data["points"][-1]["predicted_c"] == 9.25
    page = client.get("/temperature").text
    assert page.count("<polyline") >= 4  # actual, predicted, MSE 24 h, MSE 7 d
    assert re.search(r'id="mse-24h">\d+\.\d{3}<', page)
    assert "9.2 °C" in page or "9.3 °C" in page  # the open forecast


@pytest.mark.parametrize(
    "params",
    [
        {"vol_moving_avg": "-1", "adj_close_rolling_med": "abc"},
        {"vol_moving_avg": "inf", "adj_close_rolling_med": "5"},
        {"vol_moving_avg": "10"},
    ],
)
def test_volume_form_reports_the_apis_own_messages(client, params):
    api = client.get("/predict", params=params)
    assert api.status_code == 422
    page = client.get("/volume", params=params)
    assert page.status_code == 422 and 'id="prediction"' not in page.text
    shown = re.findall(r'class="field-error"[^>]*>([^<]*)<', page.text)
    assert sorted(shown) == sorted(error["msg"] for error in api.json()["detail"])


def test_volume_form_predicts_what_predict_answers(client):
    params = {"vol_moving_avg": "25000", "adj_close_rolling_med": "31.5"}
    expected = client.get("/predict", params=params).json()
    page = client.get("/volume", params=params)
    assert page.status_code == 200
    assert re.search(r'<output id="prediction"[^>]*>(\d+)</output>', page.text).group(1) == str(
        expected
    )
    assert client.get("/volume").status_code == 200  # the empty form


def test_openapi_lists_the_json_twins_not_the_pages(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/rain", "/temperature.json", "/predict", "/health"} <= set(paths)
    assert "/" not in paths and "/volume" not in paths


def test_no_request_opens_the_warehouse(client, monkeypatch):
    """Every page and JSON route answers from the in-memory snapshot: with every way of
    opening the warehouse failing like a locked file, each answers as usual, and only the
    refresher thread tried to open it. This is why a Dagster run holding DuckDB's write lock
    never holds up a page (test_dashboard_storm shows the pages under a real lock)."""
    opened_by: list[str] = []

    def locked(*args: object, **kwargs: object) -> None:
        opened_by.append(threading.current_thread().name)
        raise duckdb.IOException('Could not set lock on file "warehouse.duckdb" (test)')

    monkeypatch.setattr(duckdb, "connect", locked)
    monkeypatch.setattr(warehouse_snapshot, "read_only_connection", locked)
    for path in GOOD_REQUESTS:
        assert client.get(path).status_code == 200, path
    for path in BAD_REQUESTS:
        assert client.get(path).status_code == 422, path
    assert [name for name in opened_by if name != "dashboard-refresh"] == []
