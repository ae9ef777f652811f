"""Live mode's minute polls of the stations' current weather (One Call 3.0 ``current``).

``station_poll_sensor`` requests one ``station_poll_job`` run per UTC minute (run key = minute,
as the rain stream) when ``SOURCE_MODE=live``; in simulated mode it skips (the simulator
already delivers second-precision readings). The run's op calls ``StationFeed.poll_current``,
one call per station, and writes the rows as JSON lines to
``{S3_PREFIX}/weather/observations_polls/observed_date=YYYY-MM-DD/HH-MM.jsonl`` (the UTC minute
of the poll; a re-run of the minute overwrites it). No asset is declared for the polls (minute
partitions are costly): ``weather_observations_raw`` and ``temperature_actuals`` read them with
``read_polls`` and fall back to timemachine for hours without any.
"""

from datetime import UTC, datetime

import dagster as dg

from resources.coordinates import CoordinateRegistry
from resources.object_store import ObjectStore
from resources.poll_store import poll_key, to_json_lines
from resources.settings import LIVE, load_settings
from resources.station_feed import StationFeed
from sensors.rain import request_current_minute
from weather_assets.rain import floor_minute


def utcnow() -> datetime:
    return datetime.now(UTC)


@dg.op(
    description="Polls the stations' current weather (One Call 3.0 `current`, one call per "
    "station) and stores the rows as JSON lines, one object per UTC minute (re-runs overwrite).",
)
def poll_station_weather(
    context: dg.OpExecutionContext,
    station_feed: StationFeed,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> None:
    minute = floor_minute(utcnow())
    stations = station_feed.select(coordinates.load())
    frame = station_feed.poll_current(stations)
    key = poll_key(object_store, minute)
    uri = object_store.put_bytes(key, to_json_lines(frame), content_type="application/x-ndjson")
    context.log.info(
        f"polled {len(stations)} stations at {minute:%Y-%m-%d %H:%M} UTC: "
        f"{frame.height} readings -> {uri}"
    )


@dg.job(
    executor_def=dg.in_process_executor,
    description="One minute's poll of the stations' current weather (live mode only).",
)
def station_poll_job():
    poll_station_weather()


@dg.sensor(
    job=station_poll_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Live mode: requests one station poll per UTC minute (run key = minute). "
    "Simulated mode: skips (polling is live-only).",
)
def station_poll_sensor(context: dg.SensorEvaluationContext):
    mode = load_settings().source_mode
    if mode != LIVE:
        return dg.SkipReason(f"station polling is live-only; SOURCE_MODE is {mode}")
    return request_current_minute(
        context, gap_note="their hours fall back to timemachine", partitioned=False
    )
