"""OpenWeatherMap One Call 3.0 nowcast client, its fan-out over shards, and the Dagster resource.

One Call 2.5 was closed in 2024, so only ``/data/3.0/onecall`` is spoken. Everything below the
socket (URL, params, retries, parsing) is the same in simulated and live mode: simulated mode
mounts ``OneCallSimulator`` as the transport adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field

from resources import clock
from resources.http import ApiAuthError, ApiError, HttpClient, RetryPolicy
from resources.rate_limit import TokenBucket
from resources.settings import OPENWEATHERMAP_BASE_URL
from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.simulator import OneCallSimulator
from weather_assets.rain.transforms import PayloadError, minutely_rows

ONECALL_PATH = "/data/3.0/onecall"
# Only the nowcast is needed: excluding the rest keeps responses ~10x smaller.
ONECALL_EXCLUDE = "current,hourly,daily,alerts"
SERVICE = "OpenWeatherMap"


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
    """One Call 3.0 access: keys from the environment, one rate limiter per key.

    ``api_key``/``api_keys`` arrive through ``dg.EnvVar`` (never logged or stored). In simulated
    mode the keys are synthetic, one per shard, and the simulator enforces the same limit.
    """

    source: SourceConfig = SourceConfig()
    base_url: str = OPENWEATHERMAP_BASE_URL
    # repr=False: a resource's repr lists its fields, a resolved dg.EnvVar included.
    api_key: str | None = Field(default=None, repr=False)
    api_keys: str | None = Field(default=None, repr=False)
    calls_per_minute: int = 60
    timeout_s: float = 10.0
    max_attempts: int = 5
    max_workers: int = 16

    @property
    def key_env_var(self) -> str:
        return "OPENWEATHERMAP_API_KEYS" if self.api_keys else "OPENWEATHERMAP_API_KEY"

    def live_keys(self) -> list[str]:
        keys = [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]
        if not keys and self.api_key:
            keys = [self.api_key.strip()]
        if not keys:
            raise dg.Failure(
                "OPENWEATHERMAP_API_KEY is not set: SOURCE_MODE=live needs a One Call 3.0 key "
                "(or several, comma-separated, in OPENWEATHERMAP_API_KEYS)"
            )
        return keys

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
                    f"{n_shards} shards of {self.calls_per_minute} coordinates need {n_shards} API "
                    f"keys but {len(keys)} configured: add keys to OPENWEATHERMAP_API_KEYS, raise "
                    "OPENWEATHERMAP_CALLS_PER_MINUTE to your plan's limit, or trim LOCATIONS_FILE"
                )
        else:
            keys = [f"simulated-key-{i}" for i in range(n_shards)]
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
                rate_limiter=TokenBucket.per_minute(self.calls_per_minute),
                adapter=adapter,
                logger=logger,
                pool_size=self.max_workers,
            )
            by_key[key] = OneCallClient(http, key)
        return [by_key[keys[i % len(keys)]] for i in range(n_shards)]
