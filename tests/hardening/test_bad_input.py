"""Bad input, end to end: each case fails (or is set aside) with an error that names what was
wrong, and leaves what earlier good runs stored exactly as it was.

Every case goes in the way a user would bring it: a file or environment variable, a partition
key on the CLI, or an API (a local HTTP server in live mode) answering something unusable. The
assets run with ``definitions.build_resources(load_settings())`` against temp dirs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_pyspark import LazyPySparkResource
from werkzeug import Request, Response

from esios_assets.assets import ESIOS_ASSETS, csv_path, esios_demand_forecast
from esios_assets.checks import ESIOS_CHECKS
from esios_assets.sql_setup import create_demand_forecast_table
from market_assets.assets import MARKET_ASSETS, scan_dataset
from market_assets.checks import MARKET_CHECKS
from market_assets.ingest import EXPECTED_HEADER
from nasa_assets.assets import NASA_ASSETS
from nasa_assets.checks import NASA_CHECKS
from nasa_assets.keys import safe_key_component
from nasa_assets.simulator import png_bytes
from resources.settings import load_settings
from resources.source import SourceConfig
from resources.sql import SqlDatabase
from tests.hardening.bad_input_helpers import (
    MAINTENANCE_PAGE,
    esios_handler,
    failure_text,
    files,
    html_page,
    onecall_json,
    rows,
    run_log_text,
    step_failures,
)
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.client import OpenWeatherMapResource

REPO = Path(__file__).resolve().parents[2]
LOCATIONS = (
    "location_id,name,lat,lon\n"
    "office,Office,52.084516,5.115539\n"
    "ams,Amsterdam,52.3728,4.8936\n"
    "rtm,Rotterdam,51.9225,4.47917\n"
)
FORECASTS = "select * from weather.rain_forecasts order by all"
TOTALS = "select * from weather.rolling_precipitation_sum order by all"


def build():
    from definitions import build_resources

    return build_resources(load_settings())


def minute(minutes_ago: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime(MINUTE_FORMAT)


def rain(resources, instance, key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS],
        resources=resources,
        instance=instance,
        partition_key=key,
        raise_on_error=False,
    )


@pytest.fixture
def locations_file(platform_env, monkeypatch) -> Path:
    path = platform_env / "locations.csv"
    path.write_text(LOCATIONS)
    monkeypatch.setenv("LOCATIONS_FILE", str(path))
    return path


# --- a malformed locations.csv -------------------------------------------------------------

MALFORMED = {
    "duplicate_id": (
        LOCATIONS + "ams,Amsterdam again,52.37,4.89\n",
        " line 5: location_id 'ams' duplicates line 3",
    ),
    "lat_out_of_range": (
        LOCATIONS.replace("51.9225", "95.5"),
        " line 4: lat 95.5 is outside [-90, 90]",
    ),
    "not_a_number": (
        LOCATIONS.replace("4.8936", "east"),
        " line 3: lon 'east' is not a number",
    ),
    "missing_column": (
        LOCATIONS.replace("location_id,name,lat,lon", "location_id,name,latitude,lon"),
        ": header must contain location_id, name, lat, lon; missing lat",
    ),
}


def test_malformed_locations_file_names_file_line_and_field(locations_file, platform_env, instance):
    resources = build()
    key = minute(5)
    assert rain(resources, instance, key).success
    database = resources["warehouse"].database
    before = rows(database, FORECASTS), rows(database, TOTALS)
    objects = files(platform_env / "data" / "objects")
    assert objects, "the good run archived its raw payloads"

    # One good run, then every malformation re-runs the same minute: each must leave it be.
    for case, (body, expected) in MALFORMED.items():
        locations_file.write_text(body)
        result = rain(resources, instance, key)

        assert not result.success, case
        assert f"{locations_file}{expected}" in failure_text(result, "rain_forecasts"), case
        assert not result.asset_materializations_for_node("rolling_precipitation_sum"), case
        assert (rows(database, FORECASTS), rows(database, TOTALS)) == before, case
        assert files(platform_env / "data" / "objects") == objects, case


# --- an unknown partition key on the CLI ---------------------------------------------------


def test_unknown_partition_key_on_the_cli(locations_file, platform_env, instance):
    resources = build()
    assert rain(resources, instance, minute(3)).success
    data = files(platform_env / "data")
    home = platform_env / "dagster_home"
    home.mkdir()
    cli = Path(sys.executable).with_name("dagster")
    command = [cli, "asset", "materialize", "-m", "definitions", "--select", "rain_forecasts"]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATA_DIR": str(platform_env / "data"),
    }
    done = subprocess.run(
        [*command, "--partition", "not-a-minute"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    # Dagster's own message: it names the key, but neither the format nor the window.
    assert (
        "All selected assets must have a PartitionsDefinition containing the passed partition "
        "key `not-a-minute`" in done.stderr
    )
    assert files(platform_env / "data") == data


# --- an API answering HTML instead of JSON -------------------------------------------------

FAKE_KEY = "fake-owm-key-bad-input-77"


def test_html_instead_of_json_fails_the_minute_and_keeps_its_rows(
    locations_file, platform_env, monkeypatch, httpserver, instance
):
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("OPENWEATHERMAP_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENWEATHERMAP_BASE_URL", httpserver.url_for("").rstrip("/"))
    resources = build()
    # Three attempts instead of five keep the backoff short; the retry path is the same.
    live = resources["openweathermap"]
    resources["openweathermap"] = OpenWeatherMapResource(
        source=SourceConfig(mode="live"),
        base_url=live.base_url,
        api_key=dg.EnvVar("OPENWEATHERMAP_API_KEY"),
        max_attempts=3,
    )
    answer = {"handler": onecall_json}
    httpserver.expect_request("/data/3.0/onecall").respond_with_handler(
        lambda request: answer["handler"](request)
    )
    key = minute(0)  # live mode only fetches the present minute
    assert rain(resources, instance, key).success
    database = resources["warehouse"].database
    before = rows(database, FORECASTS), rows(database, TOTALS)
    objects = files(platform_env / "data" / "objects")

    answer["handler"] = html_page
    result = rain(resources, instance, key)

    assert not result.success
    text = failure_text(result, "rain_forecasts")
    port = httpserver.port
    assert f"3 of 3 coordinates failed for minute {key}" in text
    assert (
        "OpenWeatherMap returned a body that is not JSON (HTTP 200, content-type text/html) "
        f"for GET http://localhost:{port}/data/3.0/onecall after 3 attempts" in text
    )
    assert MAINTENANCE_PAGE[:40] in text
    logs = run_log_text(instance, result.run_id)
    assert "body is not JSON (HTTP 200, content-type text/html)" in logs and "retrying" in logs
    assert FAKE_KEY not in text and FAKE_KEY not in logs
    assert (rows(database, FORECASTS), rows(database, TOTALS)) == before
    assert files(platform_env / "data" / "objects") == objects


# --- an ESIOS month with missing hours ------------------------------------------------------

MONTH = "2017-02-01"
GAP = {"2017-02-14T03:00:00Z", "2017-02-14T04:00:00Z", "2017-02-14T05:00:00Z"}
FEBRUARY = "select * from esios.esios_demand_forecast order by datetime_utc"
HOURS = "select datetime_utc from esios.esios_demand_forecast order by 1"


@pytest.fixture
def sql_target(platform_env, monkeypatch) -> SqlDatabase:
    """The existing SQL table the ESIOS load writes to (a SQLite file), via SQL_DATABASE_URL."""
    url = f"sqlite:///{platform_env / 'target.sqlite'}"
    database = SqlDatabase(url=url)
    create_demand_forecast_table(database.engine())
    database.engine().dispose()
    monkeypatch.setenv("SQL_DATABASE_URL", url)
    return database


def sql_rows(database: SqlDatabase) -> pl.DataFrame:
    engine = SqlDatabase(url=database.url).engine()
    try:
        return pl.read_database("select * from demand_forecast_esios order by datetime_utc", engine)
    finally:
        engine.dispose()


def test_esios_month_with_missing_hours_is_kept_but_not_loaded(
    platform_env, sql_target, monkeypatch, httpserver, instance
):
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("ESIOS_API_TOKEN", "fake-esios-token")
    monkeypatch.setenv("ESIOS_BASE_URL", httpserver.url_for("").rstrip("/"))
    missing: set[str] = set()
    httpserver.expect_request("/indicators/460").respond_with_handler(
        esios_handler(lambda: missing)
    )
    resources = build()

    def run():
        return dg.materialize(
            [*ESIOS_ASSETS, *ESIOS_CHECKS],
            resources=resources,
            instance=instance,
            partition_key=MONTH,
            raise_on_error=False,
        )

    assert run().success
    loaded, exported = sql_rows(sql_target), csv_path().read_bytes()
    assert loaded.height == 672

    missing.update(GAP)
    result = run()

    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    hours = checks["esios_hours_complete"]
    assert hours.passed is False
    assert hours.metadata["incomplete"].value == (
        "2017-02: 669/672, missing UTC 2017-02-14 03:00, 2017-02-14 04:00, 2017-02-14 05:00"
    )
    assert (
        "1 blocking asset check failed with ERROR severity:\n"
        "esios_demand_forecast: esios_hours_complete" in step_failures(result)
    )
    # The data is kept in the warehouse for inspection, without the three hours...
    stored = rows(resources["warehouse"].database, HOURS)
    assert len(stored) == 669
    assert not {f"{hour:%Y-%m-%dT%H:%M:%SZ}" for (hour,) in stored} & GAP
    # ...but neither the SQL load nor the CSV ran on it: both still hold the complete month.
    assert not result.asset_materializations_for_node("demand_forecast_esios")
    assert not result.asset_materializations_for_node("esios_demand_forecast_csv")
    assert sql_rows(sql_target).equals(loaded)
    assert csv_path().read_bytes() == exported


# --- a stock CSV with a wrong header --------------------------------------------------------

META = (
    "Nasdaq Traded,Symbol,Security Name,Listing Exchange,Market Category,ETF,"
    "Round Lot Size,Test Issue,Financial Status,CQS Symbol,NASDAQ Symbol,NextShares\n"
    "Y,AAA,AAA Corp. - Common Stock,Q,Q,N,100.0,N,N,,AAA,N\n"
    "Y,HDR,Header Corp. - Common Stock,Q,Q,N,100.0,N,N,,HDR,N\n"
)
SWAPPED = "Date,Open,High,Low,Close,Volume,Adj Close"
GERMAN = "Datum,Eroeffnung,Hoch,Tief,Schluss,Bereinigt,Volumen"


def prices(days: int) -> str:
    return "".join(
        f"2020-01-{1 + i:02d},{10 + i},{11 + i},{9 + i},{10.5 + i},{9.5 + i},{1000 + i}\n"
        for i in range(days)
    )


@pytest.fixture
def market_resources(platform_env, monkeypatch):
    from tests.weather_assets.conftest import shared_spark_session

    root = platform_env / "kaggle"
    (root / "stocks").mkdir(parents=True)
    (root / "etfs").mkdir()
    (root / "symbols_valid_meta.csv").write_text(META)
    (root / "stocks" / "AAA.csv").write_text(EXPECTED_HEADER + "\n" + prices(25))
    (root / "stocks" / "HDR.csv").write_text(SWAPPED + "\n" + prices(3))
    monkeypatch.setenv("STOCK_DATASET_DIR", str(root))
    shared_spark_session()
    resources = build()
    # getOrCreate hands the assets the test session (local[1]) already running.
    resources["pyspark"] = LazyPySparkResource(spark_config={"spark.master": "local[1]"})
    return root, resources


def test_stock_csv_with_a_wrong_header_is_quarantined_and_named(
    market_resources, platform_env, instance
):
    root, resources = market_resources
    store = resources["object_store"]

    def run():
        return dg.materialize(
            [*MARKET_ASSETS, *MARKET_CHECKS],
            selection=["stock_prices"],
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )

    first = run()
    assert first.success
    meta = first.asset_materializations_for_node("stock_prices")[0].metadata
    assert meta["bad_header_files"].value == f"stocks/HDR.csv: found {SWAPPED!r}"
    assert meta["expected_header"].value == EXPECTED_HEADER
    assert f"quarantined, wrong header: stocks/HDR.csv: found {SWAPPED!r}" in run_log_text(
        instance, first.run_id
    )
    kept = scan_dataset(store, "stock_prices").collect()
    assert kept["Symbol"].unique().to_list() == ["AAA"] and kept.height == 25
    quarantine = scan_dataset(store, "stock_prices_quarantine").collect()
    assert quarantine.filter(pl.col("file") == "stocks/HDR.csv")["reason"].unique().to_list() == [
        "bad_header"
    ]
    market = platform_env / "data" / "objects" / "dagster" / "market"
    stored = files(market)

    # Every file wrong: nothing usable, so the run fails before replacing the good dataset.
    (root / "stocks" / "AAA.csv").write_text(GERMAN + "\n" + prices(25))
    second = run()

    assert not second.success
    text = failure_text(second, "stock_prices")
    assert f"{root}: no usable price rows in 2 files: 2 of 2 files have a wrong header" in text
    assert f"expected {EXPECTED_HEADER!r}" in text
    assert f"stocks/AAA.csv: found {GERMAN!r}" in text
    assert f"stocks/HDR.csv: found {SWAPPED!r}" in text
    assert files(market) == stored


# --- a NASA item whose id would escape its folder -------------------------------------------

ESCAPING = ["../../etc/passwd", "a/../../b", "PIA00001"]
UNREQUESTABLE = ".."  # "/asset/.." would become "/": the item fails, naming its id


def nasa_library(httpserver) -> None:
    """A live NASA stand-in: one search page of ESCAPING ids and UNREQUESTABLE, the manifests
    and PNGs of ESCAPING (a request anywhere else gets pytest-httpserver's HTTP 500)."""
    items = [
        {
            "href": httpserver.url_for(f"/files/{n}/collection.json"),
            "data": [{"nasa_id": nasa_id, "title": f"item {n}", "media_type": "image"}],
        }
        for n, nasa_id in enumerate([*ESCAPING, UNREQUESTABLE])
    ]
    httpserver.expect_request("/search").respond_with_json(
        {"collection": {"items": items, "metadata": {"total_hits": len(items)}, "links": []}}
    )

    def manifest(request: Request) -> Response:
        n = ESCAPING.index(request.path.removeprefix("/asset/"))  # the client %2F-quotes ids
        href = httpserver.url_for(f"/files/{n}/{n}~large.png")
        return Response(json.dumps({"collection": {"items": [{"href": href}]}}))

    httpserver.expect_request(re.compile(r"/asset/.+")).respond_with_handler(manifest)
    for n, _ in enumerate(ESCAPING):
        httpserver.expect_request(f"/files/{n}/{n}~large.png").respond_with_data(
            png_bytes(8, 6, str(n)), content_type="image/png"
        )


def test_nasa_ids_that_would_escape_are_stored_inside_the_query_folder(
    platform_env, monkeypatch, httpserver, instance
):
    from tests.weather_assets.conftest import shared_spark_session

    nasa_library(httpserver)
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("NASA_IMAGES_BASE_URL", httpserver.url_for("").rstrip("/"))
    shared_spark_session()
    resources = build()
    resources["pyspark"] = LazyPySparkResource(spark_config={"spark.master": "local[1]"})
    instance.add_dynamic_partitions("nasa_queries", ["moon"])

    result = dg.materialize(
        [*NASA_ASSETS, *NASA_CHECKS],
        partition_key="moon",
        resources=resources,
        instance=instance,
        run_config={"ops": {"nasa_images": {"config": {"max_failure_share": 0.5}}}},
        raise_on_error=False,
    )

    assert result.success
    meta = result.asset_materializations_for_node("nasa_images")[0].metadata
    assert (meta["downloaded"].value, meta["failed"].value) == (len(ESCAPING), 1)
    keys = {safe_key_component(nasa_id): nasa_id for nasa_id in ESCAPING}
    assert keys["PIA00001"] == "PIA00001"
    assert re.fullmatch(r"etc_passwd-[0-9a-f]{8}", safe_key_component(ESCAPING[0]))
    objects = platform_env / "data" / "objects"
    assert sorted(files(objects)) == sorted(
        ["dagster/nasa/moon/failures.json", "dagster/nasa/moon/search_results.parquet"]
        + [f"dagster/nasa/moon/images/{key}.png" for key in keys]
        + [f"dagster/nasa/moon/metadata/{key}.json" for key in keys]
    )
    for key, nasa_id in keys.items():
        document = json.loads((objects / f"dagster/nasa/moon/metadata/{key}.json").read_text())
        assert document["nasa_id"] == nasa_id  # the original id, kept beside its safe key
    assert not [p for p in platform_env.rglob("*") if p.name in {"passwd", "b", "b.png"}]
    failures = json.loads((objects / "dagster/nasa/moon/failures.json").read_text())
    assert failures == [
        {
            "nasa_id": "..",
            "error": "nasa_id '..' cannot be requested: /asset/.. is a relative path, not an item",
        }
    ]
    searched = rows(
        resources["warehouse"].database, "select nasa_id from nasa.nasa_image_search order by 1"
    )
    assert [r[0] for r in searched] == sorted([*ESCAPING, UNREQUESTABLE])


# --- an invalid SQL_DATABASE_URL ------------------------------------------------------------

PASSWORD = "s3cr3t-Pa55word"
BAD_URLS = {
    "not_a_url": (
        "not a url",
        "SQL_DATABASE_URL (SqlDatabase.url) is not a valid SQLAlchemy URL; expected "
        "dialect+driver://user:password@host:port/database",
    ),
    "unknown_database": (
        f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:5432/no_such_database_bad_input",
        "could not connect to host 127.0.0.1 port 5432 database no_such_database_bad_input "
        "(postgresql+psycopg2://postgres:***@127.0.0.1:5432/no_such_database_bad_input)",
    ),
    "bad_port": (
        f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:not-a-port/db",
        "SQL_DATABASE_URL (SqlDatabase.url) is not a valid SQLAlchemy URL",
    ),
}


@pytest.mark.parametrize(("url", "expected"), BAD_URLS.values(), ids=BAD_URLS.keys())
def test_invalid_sql_database_url_names_the_variable_and_hides_the_password(
    url, expected, platform_env, sql_target, monkeypatch, instance
):
    selection = [esios_demand_forecast.key, dg.AssetKey("demand_forecast_esios")]
    good = dg.materialize(
        ESIOS_ASSETS, selection=selection, resources=build(), instance=instance, partition_key=MONTH
    )
    assert good.success
    loaded = sql_rows(sql_target)
    database = str(load_settings().warehouse_path)
    warehouse = rows(database, FEBRUARY)
    on_disk = set(files(platform_env))

    monkeypatch.setenv("SQL_DATABASE_URL", url)
    result = dg.materialize(
        ESIOS_ASSETS,
        selection=[dg.AssetKey("demand_forecast_esios")],
        resources=build(),
        instance=instance,
        partition_key=MONTH,
        raise_on_error=False,
    )

    assert not result.success
    text = failure_text(result, "demand_forecast_esios")
    assert expected in text
    assert PASSWORD not in text
    assert PASSWORD not in run_log_text(instance, result.run_id)
    assert PASSWORD not in str(instance.get_run_by_id(result.run_id).run_config)
    assert sql_rows(sql_target).equals(loaded)
    assert rows(database, FEBRUARY) == warehouse
    assert set(files(platform_env)) == on_disk  # no SQLite file or anything else appeared


# --- a missing key in live mode -------------------------------------------------------------

LIVE_RUNS = {
    "rain": ([RAIN_ASSETS[0]], "OPENWEATHERMAP_API_KEY", "ESIOS_API_TOKEN", None),
    "esios": ([esios_demand_forecast], "ESIOS_API_TOKEN", "OPENWEATHERMAP_API_KEY", MONTH),
}


@pytest.mark.parametrize("case", LIVE_RUNS)
def test_live_mode_without_a_key_fails_at_start_naming_the_variable(
    case, locations_file, platform_env, monkeypatch, instance
):
    assets, variable, other, key = LIVE_RUNS[case]
    good = dg.materialize(
        assets, resources=build(), instance=instance, partition_key=key or minute(4)
    )
    assert good.success
    before = files(platform_env)

    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(other, "set-but-not-needed")
    with pytest.raises(dg.DagsterInvalidConfigError) as raised:
        dg.materialize(assets, resources=build(), instance=instance, partition_key=key or minute(0))

    assert f'the environment variable "{variable}" which is not set' in str(raised.value)
    assert files(platform_env) == before
