"""Live mode's minute polls of the stations' current weather (One Call 3.0 ``current``).

``station_poll_job`` runs once per UTC minute (requested by ``sensors.station_polls`` in live
mode). Its op calls ``StationFeed.poll_current``, one call per station, and writes the rows as
JSON lines to ``{S3_PREFIX}/weather/observations_polls/observed_date=YYYY-MM-DD/HH-MM.jsonl``
(the UTC minute of the poll; a re-run of the minute overwrites it). No asset is declared for the
polls (minute partitions are costly): ``weather_observations_raw`` and ``temperature_actuals``
read them with ``read_polls`` and fall back to timemachine for hours without any.
"""

import dagster as dg

from resources import clock
from resources.object_store import ObjectStore
from weather_assets.locations import CoordinateRegistry
from weather_assets.stations.feed import StationFeed
from weather_assets.stations.poll_store import poll_key, to_json_lines


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
    minute = clock.floor_minute(clock.utcnow())
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
