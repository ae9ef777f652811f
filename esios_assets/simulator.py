"""In-process simulator of the ESIOS API (Red Eléctrica), indicator 460 only.

Mounted on a ``requests.Session`` as a transport adapter, so in ``SOURCE_MODE=simulated`` the
real client code path (URL, query, headers, retries, parsing) runs and only the socket is
replaced::

    session.mount("https://api.esios.ree.es", EsiosSimulator(seed=0))

``GET /indicators/460?start_date=...&end_date=...&time_trunc=hour`` answers with the real JSON
shape. Dates without an offset are Spanish local time (Europe/Madrid), as ESIOS reads them, so
a local month is exactly its local hours (743 in March, 745 in October). Values are a plausible
peninsular demand curve, deterministic in (seed, hour) — see :func:`demand_mw`.

Simplifications (the real API is richer): only ``time_trunc=hour`` (or absent); both dates are
required; a malformed date or an end before the start is an HTTP 400 with a JSON ``message``;
no rate limit (ESIOS documents none); ``values_updated_at`` is derived from the requested range.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests
from dateutil.easter import easter

from resources.simulators.adapter import SimulatorAdapter
from resources.simulators.faults import FaultPlan

__all__ = [
    "ACCESS_DENIED_BODY",
    "INDICATOR_ID",
    "INDICATOR_PATH",
    "EsiosSimulator",
    "demand_mw",
    "indicator_460_payload",
]

MADRID = ZoneInfo("Europe/Madrid")
INDICATOR_ID = 460
INDICATOR_PATH = f"/indicators/{INDICATOR_ID}"
INDICATOR_NAME = "Previsión diaria de la demanda eléctrica peninsular"
PENINSULA = {"geo_id": 8741, "geo_name": "Península"}
# Rails' token-authentication refusal, byte for byte (plain text, not JSON).
ACCESS_DENIED_BODY = b"HTTP Token: Access denied."
_TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
_SERVER_HEADERS = {"Server": "nginx", "Cache-Control": "max-age=0, private, must-revalidate"}

# Demand model (MW). Level and seasonality: winter highest (heating, short days), summer next
# (air conditioning), spring and autumn lowest; a first + second annual harmonic gives that.
BASE_MW = 32_500.0
# Share of the day's peak by local hour: night trough at 4-5 h, morning ramp, evening peak in
# winter (lighting), a broad midday-afternoon plateau in summer (cooling).
_WINTER_SHAPE = (
    0.80, 0.74, 0.70, 0.68, 0.67, 0.68, 0.73, 0.83, 0.91, 0.95, 0.97, 0.98,
    0.98, 0.97, 0.94, 0.92, 0.92, 0.93, 0.96, 0.99, 1.00, 1.00, 0.95, 0.87,
)  # fmt: skip
_SUMMER_SHAPE = (
    0.82, 0.76, 0.72, 0.70, 0.68, 0.68, 0.70, 0.77, 0.85, 0.91, 0.95, 0.98,
    1.00, 1.00, 1.00, 1.00, 0.99, 0.97, 0.95, 0.94, 0.95, 0.96, 0.93, 0.87,
)  # fmt: skip
# Weekend/holiday cut at the daily peak; nights barely change, so it scales with the shape.
_SATURDAY_CUT = 0.12
_SUNDAY_CUT = 0.19
_DAY_NOISE = 0.025  # weather: day-to-day deviation
_HOUR_NOISE = 0.008
# National fixed holidays (month, day); Good Friday is added per year.
_FIXED_HOLIDAYS = frozenset(
    {(1, 1), (1, 6), (5, 1), (8, 15), (10, 12), (11, 1), (12, 6), (12, 8), (12, 25)}
)


def _hashed_noise(seed: int, *parts: object) -> float:
    """A deterministic pseudo-random number in [-1, 1) from (seed, parts)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


@lru_cache(maxsize=64)
def _good_friday(year: int) -> date:
    return easter(year) - timedelta(days=2)


def _is_holiday(day: date) -> bool:
    return (day.month, day.day) in _FIXED_HOLIDAYS or day == _good_friday(day.year)


def demand_mw(instant: datetime, seed: int = 0) -> float:
    """Forecast peninsular demand (whole MW) for the hour starting at aware ``instant``.

    People follow the local clock, so the daily shape, weekday and season come from the
    Europe/Madrid wall time; the noise is keyed on the UTC hour, so the two autumn 02:00
    hours differ. Typical range: ~20,000 MW (spring Sunday nights) to ~37,000 MW (winter
    weekday evenings).
    """
    if instant.utcoffset() is None:
        raise ValueError("instant must be timezone-aware")
    local = instant.astimezone(MADRID)
    day = local.date()
    doy = local.timetuple().tm_yday
    annual = 2 * math.pi * (doy - 15) / 365.25
    seasonal = 1200.0 * math.cos(annual) + 2200.0 * math.cos(4 * math.pi * (doy - 20) / 365.25)
    summer = max(0.0, -math.cos(annual))  # 0 in winter, 1 in mid-July
    hour = local.hour
    shape = (1 - summer) * _WINTER_SHAPE[hour] + summer * _SUMMER_SHAPE[hour]
    if local.weekday() == 6 or _is_holiday(day):
        cut = _SUNDAY_CUT
    elif local.weekday() == 5:
        cut = _SATURDAY_CUT
    else:
        cut = 0.0
    daytype = 1.0 - cut * min(1.0, max(0.0, (shape - 0.62) / 0.38))
    utc_hour = int(instant.timestamp() // 3600)
    day_noise = _DAY_NOISE * _hashed_noise(seed, "day", day.toordinal())
    noise = day_noise + _HOUR_NOISE * _hashed_noise(seed, "hour", utc_hour)
    return float(round((BASE_MW + seasonal) * shape * daytype * (1.0 + noise)))


def _local_iso(moment: datetime) -> str:
    return moment.astimezone(MADRID).isoformat(timespec="milliseconds")


def indicator_460_payload(start: datetime, end: datetime, *, seed: int = 0) -> dict[str, Any]:
    """The 200 body for every whole hour in [start, end] (aware datetimes, inclusive)."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ValueError("start and end must be timezone-aware")
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    hour = start_utc.replace(minute=0, second=0, microsecond=0)
    if hour < start_utc:
        hour += timedelta(hours=1)
    values = []
    while hour <= end_utc:
        stamp = f"{hour:%Y-%m-%dT%H:%M:%S}"
        values.append(
            {
                "value": demand_mw(hour, seed),
                "datetime": _local_iso(hour),
                "datetime_utc": f"{stamp}Z",
                "tz_time": f"{stamp}.000Z",
                **PENINSULA,
            }
        )
        hour += timedelta(hours=1)
    # Published the evening before the last forecast day (local time), at a seeded minute.
    last = (hour - timedelta(hours=1)) if values else start_utc
    last_day = last.astimezone(MADRID).date() - timedelta(days=1)
    minute = int((_hashed_noise(seed, "updated", last_day.toordinal()) + 1) * 1800)  # 0..3599 s
    updated = datetime(last_day.year, last_day.month, last_day.day, 18, tzinfo=MADRID)
    updated += timedelta(seconds=minute)
    return {
        "indicator": {
            "name": INDICATOR_NAME,
            "short_name": "Previsión diaria",
            "id": INDICATOR_ID,
            "composited": False,
            "step_type": "linear",
            "disaggregated": False,
            "magnitud": [{"name": "Potencia", "id": 20}],
            "tiempo": [{"name": "Hora", "id": 4}],
            "geos": [dict(PENINSULA)],
            "values_updated_at": _local_iso(updated),
            "values": values,
        }
    }


def _parse_date(raw: str) -> datetime | None:
    """An aware datetime; without an offset the text is Spanish local time. None if malformed.

    Nonexistent/ambiguous local times (DST) take the offset before the change (fold=0).
    """
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=MADRID)
    return parsed


def _error(status: int, message: str) -> tuple[int, dict[str, Any], str | None]:
    return status, {"message": message, "status": status}, None


class EsiosSimulator(SimulatorAdapter):
    """Transport adapter answering ``GET /indicators/460`` like api.esios.ree.es.

    Thread-safe and stateless apart from a call counter.
    """

    server_headers = _SERVER_HEADERS

    def __init__(
        self,
        *,
        seed: int = 0,
        is_valid_key: Callable[[str], bool] | None = None,
        faults: FaultPlan | None = None,
    ):
        """
        Args:
            seed: selects the synthetic demand; same seed, same answers.
            is_valid_key: which ``x-api-key`` values are accepted; default any non-empty one.
            faults: injected failures (``SIMULATOR_FAULT_RATE``); default none.
        """
        super().__init__(faults)
        self.seed = int(seed)
        self._is_valid_key = is_valid_key or bool

    def answer(
        self, request: requests.PreparedRequest
    ) -> tuple[int, bytes | dict[str, Any], str | None]:
        url = urlsplit(request.url or "")
        # Authentication comes first, as in Rails: even a wrong path is refused without a key.
        key = (request.headers.get("x-api-key") or "").strip()
        if not key or not self._is_valid_key(key):
            return 401, ACCESS_DENIED_BODY, _TEXT_CONTENT_TYPE
        if request.method != "GET" or url.path.rstrip("/") != INDICATOR_PATH:
            return _error(404, f"Not found: {request.method} {url.path}")
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        time_trunc = params.get("time_trunc", "hour")
        if time_trunc != "hour":
            return _error(400, f"time_trunc {time_trunc!r} is not simulated (only 'hour')")
        bounds = []
        for name in ("start_date", "end_date"):
            raw = params.get(name)
            if not raw:
                return _error(400, f"{name} is required")
            parsed = _parse_date(raw)
            if parsed is None:
                return _error(400, f"{name} is not a valid date: {raw!r}")
            bounds.append(parsed)
        start, end = bounds
        if end < start:
            return _error(400, "end_date is before start_date")
        return 200, indicator_460_payload(start, end, seed=self.seed), None
