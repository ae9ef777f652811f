"""The weather-station simulator: deterministic, seamless, plausible, and junk at documented rates."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from weather_assets.locations import Location, load_locations
from weather_assets.stations.feed import to_csv_bytes
from weather_assets.stations.simulator import (
    JUNK_SHARES,
    SENTINEL,
    VALID_RANGES,
    VALUE_COLUMNS,
    hourly_temperatures,
    raw_readings,
    truth,
)

OFFICE = Location("office", "Office (Utrecht)", 52.084516, 5.115539)
AMERSFOORT = Location("amersfoort", "Amersfoort", 52.156100, 5.387800)
DAY = date(2025, 11, 20)
DAY_START = int(datetime(2025, 11, 20, tzinfo=UTC).timestamp())


def unix(text: pl.Series) -> np.ndarray:
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").dt.epoch("s").to_numpy()


# --- determinism and continuity --------------------------------------------------------------


def test_truth_is_a_pure_function_of_seed_place_and_time():
    ts = DAY_START + np.arange(0, 86400, 7)
    first = truth(OFFICE, ts)
    again = truth(OFFICE, ts)
    for name in VALUE_COLUMNS:
        np.testing.assert_array_equal(first[name], again[name])
    # Any sub-window, in any order, gives the same values: windows never disagree.
    pick = np.random.default_rng(0).permutation(ts.size)[:500]
    part = truth(OFFICE, ts[pick])
    for name in VALUE_COLUMNS:
        np.testing.assert_array_equal(part[name], first[name][pick])
    other_seed = truth(OFFICE, ts, seed=1)["temperature_c"]
    assert np.abs(other_seed - first["temperature_c"]).mean() > 0.5


def test_truth_handles_sparse_timestamps_years_apart():
    ts = np.array([0, 10**9, 1_700_000_000, 1_700_000_001], dtype=np.int64)
    sparse = truth(OFFICE, ts)["temperature_c"]
    assert sparse[3] == pytest.approx(sparse[2], abs=0.3)
    assert sparse[2] == truth(OFFICE, ts[2:3])["temperature_c"][0]


def test_raw_readings_are_deterministic():
    a = raw_readings([OFFICE, AMERSFOORT], DAY, seed=3)
    b = raw_readings([OFFICE, AMERSFOORT], DAY, seed=3)
    assert a.equals(b)
    assert to_csv_bytes(a) == to_csv_bytes(b)
    assert not a.equals(raw_readings([OFFICE, AMERSFOORT], DAY, seed=4))


def test_days_join_seamlessly():
    day1 = raw_readings([OFFICE], DAY, junk_rate=0.0)
    day2 = raw_readings([OFFICE], DAY + timedelta(days=1), junk_rate=0.0)
    last, first = day1.row(-1, named=True), day2.row(0, named=True)
    gap = unix(pl.Series([first["observed_at"]]))[0] - unix(pl.Series([last["observed_at"]]))[0]
    assert 0 < gap <= 20
    assert abs(first["temperature_c"] - last["temperature_c"]) < 0.5
    assert abs(first["pressure_hpa"] - last["pressure_hpa"]) < 0.5
    assert abs(first["humidity_pct"] - last["humidity_pct"]) < 3
    # Hourly actuals: a two-day request equals two one-day requests.
    start = datetime(2025, 11, 20, tzinfo=UTC)
    both = hourly_temperatures(OFFICE, start, start + timedelta(days=2))
    split = pl.concat(
        [
            hourly_temperatures(OFFICE, start, start + timedelta(days=1)),
            hourly_temperatures(OFFICE, start + timedelta(days=1), start + timedelta(days=2)),
        ]
    )
    assert both.equals(split)


# --- hourly actuals ---------------------------------------------------------------------------


def test_hourly_temperatures_shape():
    start = datetime(2025, 11, 20, 6, 30, tzinfo=UTC)
    hourly = hourly_temperatures(OFFICE, start, datetime(2025, 11, 20, 12, tzinfo=UTC))
    assert hourly.schema == pl.Schema(
        {"timestamp": pl.Datetime("us", "UTC"), "temperature_c": pl.Float64}
    )
    assert hourly["timestamp"].to_list() == [
        datetime(2025, 11, 20, h, tzinfo=UTC) for h in range(6, 12)
    ]
    naive = hourly_temperatures(OFFICE, datetime(2025, 11, 20, 6), datetime(2025, 11, 20, 12))
    assert naive.equals(hourly)
    assert hourly_temperatures(OFFICE, start, start).height == 0


def test_hourly_means_equal_the_mean_of_the_truth():
    start = datetime(2025, 11, 20, 10, tzinfo=UTC)
    hourly = hourly_temperatures(OFFICE, start, start + timedelta(hours=6))
    for i, row in enumerate(hourly.iter_rows(named=True)):
        seconds = int(start.timestamp()) + 3600 * i + np.arange(3600)
        mean = truth(OFFICE, seconds)["temperature_c"].mean()
        assert row["temperature_c"] == pytest.approx(mean, abs=0.02)


# --- plausibility (Utrecht) --------------------------------------------------------------------


def month_stats(month: int, seed: int) -> dict[str, float]:
    start = datetime(2025, month, 1, tzinfo=UTC)
    hourly = hourly_temperatures(OFFICE, start, start + timedelta(days=30), seed=seed)
    days = hourly["temperature_c"].to_numpy().reshape(30, 24)
    mean_day = days.mean(axis=0)
    return {
        "mean": days.mean(),
        "range": (days.max(axis=1) - days.min(axis=1)).mean(),
        "daily_mean_sd": days.mean(axis=1).std(),
        "day_to_day": np.abs(np.diff(days.mean(axis=1))).mean(),
        "warmest_hour": int(mean_day.argmax()),
        "coldest_hour": int(mean_day.argmin()),
        "hourly_change_sd": np.diff(days.ravel()).std(),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_november_and_july_look_like_utrecht(seed):
    november, july = month_stats(11, seed), month_stats(7, seed)
    # De Bilt normals: November ~6.5 °C with a ~5-6 °C daily range, July ~18.5 °C, ~10 °C.
    assert 1.0 < november["mean"] < 11.0
    assert 3.0 < november["range"] < 8.0
    assert 14.0 < july["mean"] < 23.0
    assert 6.0 < july["range"] < 12.0
    assert july["range"] > november["range"] + 1.0
    for stats in (november, july):
        assert 12 <= stats["warmest_hour"] <= 15  # ~14-15 h solar = ~13:40-14:40 UTC
        assert 2 <= stats["coldest_hour"] <= 8  # around sunrise
        # Weather changes from day to day, by about 1-3 °C in the daily mean.
        assert 0.8 < stats["day_to_day"] < 3.5
        assert 1.0 < stats["daily_mean_sd"] < 6.0
        assert 0.4 < stats["hourly_change_sd"] < 1.5


def test_other_fields_are_plausible_and_coupled():
    ts = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) + 3600 * np.arange(24 * 365) + 1800
    values = truth(OFFICE, ts, seed=0)
    for name, (low, high) in VALID_RANGES.items():
        assert low <= values[name].min() and values[name].max() <= high, name
    days = {name: values[name].reshape(365, 24) for name in VALUE_COLUMNS}

    def anomaly(daily: np.ndarray) -> np.ndarray:  # minus a 31-day running mean (the season)
        return daily - np.convolve(np.pad(daily, 15, mode="edge"), np.ones(31) / 31, "valid")

    t_anomaly = anomaly(days["temperature_c"].mean(axis=1))
    p_anomaly = anomaly(days["pressure_hpa"].mean(axis=1))
    assert np.corrcoef(t_anomaly, p_anomaly)[0, 1] < -0.5
    assert 4.0 < values["pressure_hpa"].std() < 15.0
    diurnal_t = (days["temperature_c"] - days["temperature_c"].mean(axis=1, keepdims=True)).ravel()
    diurnal_h = (days["humidity_pct"] - days["humidity_pct"].mean(axis=1, keepdims=True)).ravel()
    assert np.corrcoef(diurnal_t, diurnal_h)[0, 1] < -0.5
    assert 2.5 < values["wind_speed_ms"].mean() < 7.0
    westerly = (values["wind_deg"] > 180) & (values["wind_deg"] < 330)
    assert westerly.mean() > 0.4  # prevailing south-westerlies


def test_neighbours_share_the_weather():
    start = datetime(2025, 11, 1, tzinfo=UTC)
    office = hourly_temperatures(OFFICE, start, start + timedelta(days=20))["temperature_c"]
    amersfoort = hourly_temperatures(AMERSFOORT, start, start + timedelta(days=20))
    far = Location("madrid", "Madrid", 40.4168, -3.7038)
    madrid = hourly_temperatures(far, start, start + timedelta(days=20))["temperature_c"]
    close = np.corrcoef(office, amersfoort["temperature_c"])[0, 1]
    assert close > 0.9
    assert close > np.corrcoef(office, madrid)[0, 1]


# --- the raw feed ---------------------------------------------------------------------------


def test_raw_readings_schema_and_cadence():
    readings = raw_readings([OFFICE, AMERSFOORT], DAY, junk_rate=0.0)
    assert readings.schema == pl.Schema(
        {
            "station_id": pl.String,
            "observed_at": pl.String,
            **dict.fromkeys(VALUE_COLUMNS, pl.Float64),
        }
    )
    assert readings["observed_at"].str.contains(r"^2025-11-20T\d{2}:\d{2}:\d{2}Z$").all()
    for station in ("office", "amersfoort"):
        seconds = unix(readings.filter(pl.col("station_id") == station)["observed_at"])
        steps = np.diff(seconds)
        assert (steps > 0).all()  # clean feed: in order, no duplicates
        assert np.median(steps) == pytest.approx(10, abs=1)
        assert steps.min() >= 5 and steps.max() <= 15
        assert seconds.size == pytest.approx(8640, abs=2)
    for name, (low, high) in VALID_RANGES.items():
        assert readings[name].is_between(low, high).all(), name
    # Clean readings follow the truth (rounded as a sensor reports).
    office = readings.filter(pl.col("station_id") == "office").head(200)
    expected = truth(OFFICE, unix(office["observed_at"]))["temperature_c"]
    np.testing.assert_allclose(office["temperature_c"].to_numpy(), expected, atol=0.006)


def test_csv_round_trip():
    readings = raw_readings([OFFICE], DAY, junk_rate=0.05).head(5000)
    back = pl.read_csv(
        io.BytesIO(to_csv_bytes(readings)),
        schema_overrides=dict.fromkeys(VALUE_COLUMNS, pl.Float64),
    )
    assert back.equals(readings)
    assert to_csv_bytes(readings).startswith(b"station_id,observed_at,temperature_c,")


def test_junk_rate_validation():
    with pytest.raises(ValueError, match="junk_rate"):
        raw_readings([OFFICE], DAY, junk_rate=1.5)
    with pytest.raises(ValueError, match="interval_s"):
        raw_readings([OFFICE], DAY, interval_s=0.5)


def test_junk_shares_match_the_documented_rates():
    locations = load_locations("weather_assets/locations.csv")[:6]
    junk_rate = 0.02
    feed = raw_readings(locations, DAY, interval_s=2.0, junk_rate=junk_rate, label_junk=True)
    counts = dict(feed["junk_kind"].value_counts().drop_nulls().iter_rows())
    n_readings = feed.height - counts["duplicate"]  # rates are per reading, before copies
    for kind, share in JUNK_SHARES.items():
        expected = n_readings * junk_rate * share
        # ~1,000-3,000 expected per kind: 5 binomial standard deviations is about 10-15 %.
        assert abs(counts[kind] - expected) < 5 * np.sqrt(expected), (kind, counts[kind], expected)

    # The labels describe what a cleaning step can actually see in the data.
    values = feed.select(VALUE_COLUMNS)
    null_rows = values.select(pl.any_horizontal(pl.all().is_null())).to_series()
    assert null_rows.sum() == counts["null"]
    sentinel_rows = values.select(pl.any_horizontal(pl.all() == SENTINEL)).to_series()
    assert sentinel_rows.sum() == counts["sentinel"]
    outside = pl.any_horizontal(
        ~pl.col(name).is_between(low, high) & (pl.col(name) != SENTINEL)
        for name, (low, high) in VALID_RANGES.items()
    )
    assert feed.filter(outside)["junk_kind"].unique().to_list() == ["absurd"]
    assert feed.filter(outside).height == counts["absurd"]
    assert feed.height - feed.drop("junk_kind").unique().height == counts["duplicate"]

    spikes = feed.filter(pl.col("junk_kind") == "spike")
    station = {loc.location_id: loc for loc in locations}
    for row in spikes.head(50).iter_rows(named=True):
        actual = truth(station[row["station_id"]], unix(pl.Series([row["observed_at"]])))
        assert 7.9 <= abs(row["temperature_c"] - actual["temperature_c"][0]) <= 20.1

    # Out of order: observed before something already received from the same station.
    late = (
        feed.with_columns(seconds=pl.col("observed_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ"))
        .with_columns(
            late=pl.col("seconds") < pl.col("seconds").cum_max().shift(1).over("station_id")
        )
        .filter(pl.col("late"))
    )
    assert late["junk_kind"].unique().to_list() == ["out_of_order"]
    assert late.height == counts["out_of_order"]


def test_no_junk_when_rate_is_zero():
    feed = raw_readings([OFFICE, AMERSFOORT], DAY, junk_rate=0.0, label_junk=True)
    assert feed["junk_kind"].null_count() == feed.height
    assert feed.null_count().select(VALUE_COLUMNS).sum_horizontal().item() == 0
