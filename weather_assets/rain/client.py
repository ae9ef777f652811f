"""OpenWeatherMap One Call 3.0 nowcast client, its fan-out over shards, and the Dagster resource.

One Call 2.5 was closed in 2024, so only ``/data/3.0/onecall`` is spoken. Everything below the
socket (URL, params, retries, parsing) is the same in simulated and live mode: simulated mode
mounts ``OneCallSimulator`` as the transport adapter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field

from resources import clock
from resources.api_budget import store_from
from resources.http import ApiAuthError, ApiError, HttpClient, RetryPolicy
from resources.rate_limit import RateLimiter, TokenBucket
from resources.settings import OPENWEATHERMAP_BASE_URL
from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.simulator import OneCallSimulator
from weather_assets.rain.transforms import PayloadError, minutely_rows

ONECALL_PATH = "/data/3.0/onecall"
# Only the nowcast is needed: excluding the rest keeps responses ~10x smaller.
ONECALL_EXCLUDE = "current,hourly,daily,alerts"
SERVICE = "OpenWeatherMap"
# The shared budgets' API name: the rain fetch and the station feed spend the same per-key budget.
BUDGET_API = "openweathermap"
# Calls per key per minute left unplanned, so a key used to its limit every minute does not build
# a queue that grows minute after minute (a granted call frees its slot a full window later).
KEY_SLACK_PER_MINUTE = 1


def key_limiter(
    key: str, calls_per_minute: int, rate_limit_file: str | None, rate_limit_db_url: str | None
) -> RateLimiter:
    """The limiter of one One Call key: its shared budget when a store is configured (live
    mode), else an in-process bucket (simulated mode, tests)."""
    store = store_from(rate_limit_file, rate_limit_db_url)
    if store is None:
        return TokenBucket.per_minute(calls_per_minute)
    return store.budget(BUDGET_API, key, calls_per_minute, 60.0)


def split_keys(api_keys: str | None, api_key: str | None) -> list[str]:
    """``OPENWEATHERMAP_API_KEYS`` (comma-separated) if set, else ``OPENWEATHERMAP_API_KEY``."""
    keys = [k.strip() for k in (api_keys or "").split(",") if k.strip()]
    if not keys and api_key and api_key.strip():
        keys = [api_key.strip()]
    return keys


class OneCallClient:
    """Nowcasts through one API key (one rate limit)."""

    def __init__(self, http: HttpClient, api_key: str):
        self._http = http
        self._api_key = api_key

    @property
    def retries(self) -> int:
        return self._http.stats.retries

    @property
    def retries_by_reason(self) -> dict[str, int]:
        """e.g. {"HTTP 503": 2, "timeout": 1, "malformed body": 1}."""
        return self._http.stats.retries_by_reason

    def minutely(self, lat: float, lon: float) -> dict[str, Any]:
        return self._http.get_json_object(
            ONECALL_PATH,
            params={
                "lat": f"{lat:.6f}",
                "lon": f"{lon:.6f}",
                "exclude": ONECALL_EXCLUDE,
                "units": "metric",
                "appid": self._api_key,
            },
        )


@dataclass(frozen=True)
class NowcastResult:
    """What one coordinate's call produced: parsed rows, the raw payload, or why it failed."""

    location: Location
    shard: int
    rows: list[tuple[int, float | None]]
    payload: dict[str, Any] | None
    error: str | None = None
    answered_at: datetime | None = None
    """When the answer (or the last failure) came back, by the ``now`` given to the fetch."""


def fetch_nowcasts(
    shards: Sequence[Sequence[Location]],
    clients: Sequence[OneCallClient],
    *,
    max_workers: int = 16,
    now: Callable[[], datetime] | None = None,
) -> list[NowcastResult]:
    """Fetch every coordinate, shard ``i`` through ``clients[i]``, in registry order.

    A coordinate that still fails after the client's retries is reported, not raised, so one
    bad answer does not cost the other coordinates their minute; a rejected key aborts all.
    """
    now = now or clock.utcnow
    if len(clients) != len(shards):
        raise ValueError(f"{len(shards)} shards need {len(shards)} clients, got {len(clients)}")

    def fetch(shard_index: int, location: Location) -> NowcastResult:
        try:
            payload = clients[shard_index].minutely(location.lat, location.lon)
            rows = minutely_rows(payload, location.location_id)
        except ApiAuthError:
            raise
        except (ApiError, PayloadError) as exc:
            return NowcastResult(location, shard_index, [], None, str(exc), now())
        return NowcastResult(location, shard_index, rows, payload, None, now())

    jobs = [(i, loc) for i, shard in enumerate(shards) for loc in shard]
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        futures = [pool.submit(fetch, i, loc) for i, loc in jobs]
        try:
            return [f.result() for f in futures]
        except ApiAuthError:
            for future in futures:
                future.cancel()
            raise


class OpenWeatherMapResource(dg.ConfigurableResource):
    """One Call 3.0 access: keys from the environment, one rate limit per key.

    ``api_key``/``api_keys`` arrive through ``dg.EnvVar`` (never logged or stored). In live mode
    with ``rate_limit_file`` or ``rate_limit_db_url`` set (the root definitions set them), each
    key's limit is one budget shared with every process and with the station feed
    (``resources.api_budget``). In simulated mode the keys are synthetic, one per shard, the
    limiters in-process, and the simulator enforces the same limit.
    """

    source: SourceConfig = SourceConfig()
    base_url: str = OPENWEATHERMAP_BASE_URL
    # repr=False: a resource's repr lists its fields, a resolved dg.EnvVar included.
    api_key: str | None = Field(default=None, repr=False)
    api_keys: str | None = Field(default=None, repr=False)
    calls_per_minute: int = 60
    station_calls_per_minute: int = 0
    """Live mode: calls a minute the station feed makes on these keys (one poll per station,
    spread over the keys); the rain shards leave them free."""
    rate_limit_file: str | None = None
    rate_limit_db_url: str | None = Field(default=None, repr=False)
    timeout_s: float = 10.0
    max_attempts: int = 5
    max_workers: int = 16

    @property
    def key_env_var(self) -> str:
        return "OPENWEATHERMAP_API_KEYS" if self.api_keys else "OPENWEATHERMAP_API_KEY"

    def live_keys(self) -> list[str]:
        keys = split_keys(self.api_keys, self.api_key)
        if not keys:
            raise dg.Failure(
                "OPENWEATHERMAP_API_KEY is not set: SOURCE_MODE=live needs a One Call 3.0 key "
                "(or several, comma-separated, in OPENWEATHERMAP_API_KEYS)"
            )
        return keys

    def shard_size(self) -> int:
        """Coordinates per shard: what one key can fetch each minute.

        Simulated: ``calls_per_minute``. Live: the key's limit less its share of the station
        polls and ``KEY_SLACK_PER_MINUTE``, since every consumer of a key spends one budget.
        """
        if not self.source.live:
            return self.calls_per_minute
        n_keys = len(self.live_keys())
        stations = math.ceil(self.station_calls_per_minute / n_keys)
        size = self.calls_per_minute - stations - KEY_SLACK_PER_MINUTE
        if size < 1:
            raise dg.Failure(
                f"no rain calls fit in a key: OPENWEATHERMAP_CALLS_PER_MINUTE="
                f"{self.calls_per_minute} less {stations} station polls a minute per key "
                f"({self.station_calls_per_minute} stations over {n_keys} keys) less "
                f"{KEY_SLACK_PER_MINUTE} kept free leaves {size}; add keys to "
                "OPENWEATHERMAP_API_KEYS or poll fewer OBSERVATION_STATIONS"
            )
        return size

    def clients_for(
        self,
        n_shards: int,
        *,
        clock: Callable[[], datetime],
        logger: logging.Logger | None = None,
    ) -> list[OneCallClient]:
        """One client per shard; shards sharing a key share its client and rate limiter.

        ``clock`` is "now" for the simulator (the partition minute, so backfills reproduce);
        live mode ignores it: the real API always answers for the real present.
        """
        if self.source.live:
            keys = self.live_keys()
            if n_shards > len(keys):
                raise dg.Failure(
                    f"{n_shards} shards of up to {self.shard_size()} coordinates need {n_shards} "
                    f"API keys but {len(keys)} configured (a key's "
                    f"{self.calls_per_minute} calls a minute also pay for the station polls, "
                    f"{self.station_calls_per_minute} a minute, and {KEY_SLACK_PER_MINUTE} kept "
                    "free): add keys to OPENWEATHERMAP_API_KEYS, raise "
                    "OPENWEATHERMAP_CALLS_PER_MINUTE to your plan's limit, or trim LOCATIONS_FILE"
                )
            file, db_url = self.rate_limit_file, self.rate_limit_db_url
        else:
            keys = [f"simulated-key-{i}" for i in range(n_shards)]
            file = db_url = None  # the simulator's limit is per run, on its own clock
        adapter = self.source.adapter(
            lambda: OneCallSimulator(
                seed=self.source.seed,
                clock=clock,
                calls_per_minute=self.calls_per_minute,
                faults=self.source.faults,
            )
        )

        by_key: dict[str, OneCallClient] = {}
        for key in keys[:n_shards]:
            http = HttpClient(
                service=SERVICE,
                base_url=self.base_url,
                key_env_var=self.key_env_var,
                secrets=list(keys),
                timeout_s=self.timeout_s,
                retry=RetryPolicy(max_attempts=self.max_attempts),
                rate_limiter=key_limiter(key, self.calls_per_minute, file, db_url),
                adapter=adapter,
                logger=logger,
                pool_size=self.max_workers,
            )
            by_key[key] = OneCallClient(http, key)
        return [by_key[keys[i % len(keys)]] for i in range(n_shards)]
