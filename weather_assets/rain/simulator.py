"""In-process simulator of the OpenWeatherMap One Call API 3.0 (minutely nowcast).

Mounted on a ``requests.Session`` as a transport adapter, so in ``SOURCE_MODE=simulated``
the real client code path (URL, params, parsing, retries) runs and only the socket is
replaced::

    session.mount("https://api.openweathermap.org", OneCallSimulator(seed=0, clock=...))

Answers have the real API's status codes, error bodies and JSON shape, are deterministic
in (seed, coordinate, time) — see :mod:`weather_assets.rain.rain_field` — and each API key
is held to a token-bucket rate limit like a real subscription.

The window is the real API's: a call made at ``now`` is answered with 61 ``minutely``
entries from the next full minute, ``floor(now / 60) * 60 + 60`` (also when ``now`` is exactly
on a minute boundary, as the partition minute of a backfill is), one minute apart. The
documented example: a call at ``current.dt`` 1684929490 (10 s into its minute) gets
``minutely`` from 1684929540. So the 60 minutes after the call's minute are entries 0-59 and
the 61st entry is one minute beyond them.

Only ``minutely`` is simulated in full. ``current`` is returned unless ``exclude`` names it,
reduced to ``{"dt": <call time, unix seconds>}`` (the real API's ``current.dt`` is the time of
the call); ``hourly``, ``daily`` and ``alerts`` are never returned, whatever ``exclude`` says.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from urllib.parse import unquote_plus, urlsplit

import numpy as np
import requests

from resources import clock as clock_module
from resources.simulators.adapter import SimulatorAdapter
from resources.simulators.faults import FaultPlan
from weather_assets.rain.rain_field import has_nowcast, rain_rate_mm_per_h

ONECALL_PATH = "/data/3.0/onecall"
CLOSED_ONECALL_PATH = "/data/2.5/onecall"
MINUTES = 61

# Error bodies byte for byte as OpenWeather sends them (their spacing included).
INVALID_KEY_BODY = (
    b'{"cod":401, "message": "Invalid API key. Please see '
    b'https://openweathermap.org/faq#error401 for more info."}'
)
RATE_LIMITED_BODY = (
    b'{"cod":429, "message": "Your account is temporary blocked due to exceeding of '
    b"requests limitation of your subscription type. Please choose the proper subscription "
    b'https://openweathermap.org/price"}'
)
CLOSED_SUBSCRIPTION_BODY = (
    b'{"cod":401, "message": "Please note that using One Call 3.0 requires a separate '
    b"subscription to the One Call by Call plan. Learn more here "
    b"https://openweathermap.org/price. If you have a valid subscription to the One Call by "
    b"Call plan, but still receive this error, then please see "
    b'https://openweathermap.org/faq#error401 for more info."}'
)
NOT_FOUND_BODY = b'{"cod":404,"message":"Internal error"}'
WRONG_LATITUDE_BODY = b'{"cod":"400","message":"wrong latitude"}'
WRONG_LONGITUDE_BODY = b'{"cod":"400","message":"wrong longitude"}'
NOTHING_TO_GEOCODE_BODY = b'{"cod":"400","message":"Nothing to geocode"}'

_SERVER_HEADERS = {
    "Server": "openresty",
    "Connection": "keep-alive",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Allow-Methods": "GET, POST",
}


def _default_key_check(key: str) -> bool:
    return bool(key) and not key.startswith("invalid")


def approximate_timezone(lon: float) -> tuple[str, int]:
    """(timezone name, offset seconds) from longitude alone.

    No offline coordinate->timezone database is available, so this is the nautical zone:
    round(lon / 15) hours. The real API returns IANA names ("Europe/Amsterdam") and
    DST-aware offsets; here names are "Etc/GMT" zones, whose POSIX sign is inverted
    (UTC+1 is "Etc/GMT-1").
    """
    hours = min(max(math.floor(lon / 15.0 + 0.5), -12), 14)
    if hours == 0:
        return "Etc/GMT", 0
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}", hours * 3600


def _json_number(x: float) -> str:
    """JSON text of a number, whole numbers without ".0" as the real API prints them."""
    return str(int(x)) if x.is_integer() else repr(x)


def _hundredths_text(c: int) -> str:
    """JSON text of c/100 in shortest form: 0, 0.4, 0.41, 12."""
    whole, frac = divmod(c, 100)
    if frac == 0:
        return str(whole)
    if frac % 10 == 0:
        return f"{whole}.{frac // 10}"
    return f"{whole}.{frac:02d}"


# Precomputed '<rate>}' texts of 0.00-99.99 mm/h: serialising 61 entries is the hot path.
_RATE_TEXT = tuple(_hundredths_text(c) + "}" for c in range(10_000))


@lru_cache(maxsize=8)
def _entry_prefixes(first_dt: int) -> tuple[str, ...]:
    """'{"dt":...,"precipitation":' of each minute; concurrent calls share the minute."""
    return tuple(f'{{"dt":{first_dt + 60 * i},"precipitation":' for i in range(MINUTES))


@lru_cache(maxsize=8)
def _dry_entries(first_dt: int) -> str:
    return ",".join(p + "0}" for p in _entry_prefixes(first_dt))


def first_minutely_dt(now: datetime) -> int:
    """Unix seconds of the first ``minutely`` entry of a call at ``now``: the next full minute."""
    return math.floor(now.timestamp() / 60) * 60 + 60


def _query_params(query: str) -> dict[str, str]:
    """parse_qsl's result (first value wins) at a fraction of its cost on the hot path."""
    params: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name), unquote_plus(value)
        if name:
            params.setdefault(name, value)
    return params


def _parse_coordinate(raw: str | None, limit: float) -> float | None:
    """The coordinate, or None when it is not a finite number within ±limit."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return value


def onecall_json(
    lat: float,
    lon: float,
    now: datetime,
    *,
    seed: int = 0,
    no_nowcast_share: float = 0.03,
    minutely: bool = True,
    current: bool = True,
) -> bytes:
    """The 200 body for one request, serialised compactly like the real API.

    ``minutely`` holds 61 entries from the minute after ``now``'s (see the module docstring);
    ``current`` is ``{"dt": int(now)}``. Hand-built rather than json.dumps'ed because it is
    most of the per-call cost. Coordinates are rounded to 4 decimals first (as echoed), so the
    body is a function of what the response itself says.
    """
    lat, lon = round(lat, 4), round(lon, 4)
    tz_name, tz_offset = approximate_timezone(lon)
    head = (
        f'{{"lat":{_json_number(lat)},"lon":{_json_number(lon)},'
        f'"timezone":"{tz_name}","timezone_offset":{tz_offset}'
    )
    if current:
        head += f',"current":{{"dt":{int(now.timestamp())}}}'
    if not (minutely and has_nowcast(lat, lon, seed, no_nowcast_share)):
        return (head + "}").encode()
    first = first_minutely_dt(now)
    dts = first + 60 * np.arange(MINUTES, dtype=np.int64)
    hundredths = np.rint(rain_rate_mm_per_h(lat, lon, dts, seed) * 100).astype(np.int64)
    if not hundredths.any():  # dry, most of the time
        entries = _dry_entries(first)
    else:
        texts = [
            _RATE_TEXT[c] if c < len(_RATE_TEXT) else _hundredths_text(c) + "}"
            for c in hundredths.tolist()
        ]
        entries = ",".join(map(operator.add, _entry_prefixes(first), texts))
    return f'{head},"minutely":[{entries}]}}'.encode()


class OneCallSimulator(SimulatorAdapter):
    """Transport adapter answering One Call 3.0 requests like api.openweathermap.org.

    Thread-safe: one instance can serve a session shared by a thread pool.
    """

    server_headers = _SERVER_HEADERS

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
        calls_per_minute: int | None = 60,
        is_valid_key: Callable[[str], bool] | None = None,
        no_nowcast_share: float = 0.03,
        faults: FaultPlan | None = None,
    ) -> None:
        """
        Args:
            seed: selects the synthetic weather; same seed, same answers.
            clock: "now" as an aware datetime. The platform passes the partition minute so
                backfills of past minutes are reproducible. Default: real UTC now.
            calls_per_minute: per API key; token bucket holding this many calls and
                refilling calls_per_minute/60 per second (time.monotonic). None: no limit.
            is_valid_key: default accepts any non-empty key not starting with "invalid".
            no_nowcast_share: share of 5° regions without a nowcast (no ``minutely``).
            faults: injected failures (``SIMULATOR_FAULT_RATE``); default none.
        """
        super().__init__(faults)
        if calls_per_minute is not None and calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be positive or None")
        if not 0.0 <= no_nowcast_share <= 1.0:
            raise ValueError("no_nowcast_share must be within [0, 1]")
        self.seed = int(seed)
        # Looked up at each call, so a test that sets resources.clock sets this one too.
        self._clock = clock or (lambda: clock_module.utcnow())
        self.calls_per_minute = calls_per_minute
        self._is_valid_key = is_valid_key or _default_key_check
        self.no_nowcast_share = float(no_nowcast_share)
        # api key -> (tokens, monotonic time of the last refill)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._monotonic: Callable[[], float] = time.monotonic  # tests may freeze it

    def _take_token(self, key: str) -> bool:
        """Token bucket per key; must hold self._lock."""
        if self.calls_per_minute is None:
            return True
        capacity = float(self.calls_per_minute)
        now = self._monotonic()
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * capacity / 60.0)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def answer(self, request: requests.PreparedRequest) -> tuple[int, bytes, None]:
        status, body = self._answer(request)
        return status, body, None

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, bytes]:
        url = urlsplit(request.url or "")
        path = url.path.rstrip("/")
        if path == CLOSED_ONECALL_PATH:
            return 401, CLOSED_SUBSCRIPTION_BODY
        if request.method != "GET" or path != ONECALL_PATH:
            return 404, NOT_FOUND_BODY
        params = _query_params(url.query)
        key = params.get("appid", "")
        if not self._is_valid_key(key):
            return 401, INVALID_KEY_BODY
        # Every authenticated call counts, bad coordinates included, as on a real plan.
        with self._lock:
            allowed = self._take_token(key)
        if not allowed:
            return 429, RATE_LIMITED_BODY
        raw_lat, raw_lon = params.get("lat"), params.get("lon")
        if not raw_lat or not raw_lon:
            return 400, NOTHING_TO_GEOCODE_BODY
        lat = _parse_coordinate(raw_lat, 90.0)
        if lat is None:
            return 400, WRONG_LATITUDE_BODY
        lon = _parse_coordinate(raw_lon, 180.0)
        if lon is None:
            return 400, WRONG_LONGITUDE_BODY
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("clock must return an aware datetime")
        excluded = {part.strip() for part in params.get("exclude", "").split(",")}
        body = onecall_json(
            lat,
            lon,
            now,
            seed=self.seed,
            no_nowcast_share=self.no_nowcast_share,
            minutely="minutely" not in excluded,
            current="current" not in excluded,
        )
        return 200, body
