"""ESIOS (Red Eléctrica) indicator client on the shared HTTP base, and its Dagster resource.

Only indicator 460, the hourly day-ahead forecast of peninsular demand (MW), fetched one Spanish
local month per request. Everything below the socket is the same in simulated and live mode:
simulated mode mounts ``EsiosSimulator`` as the transport adapter.
"""

from __future__ import annotations

import calendar
import logging
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field

from esios_assets.simulator import EsiosSimulator
from resources.http import HttpClient, RetryPolicy
from resources.source import SourceConfig

__all__ = [
    "DEMAND_FORECAST_INDICATOR",
    "ESIOS_BASE_URL",
    "EsiosClient",
    "EsiosResource",
    "month_query",
]

ESIOS_BASE_URL = "https://api.esios.ree.es"
SERVICE = "ESIOS"
TOKEN_ENV_VAR = "ESIOS_API_TOKEN"
DEMAND_FORECAST_INDICATOR = 460
# The versioned media type selects API v1; plain application/json alone is not enough.
ACCEPT = "application/json; application/vnd.esios-api-v1+json"


def month_query(month_start: date) -> dict[str, str]:
    """Query for one local month: its first day 00:00:00 to its last day 23:59:59, no offset.

    ESIOS reads offset-less dates as Spanish local time (Europe/Madrid), so this range is
    exactly the month's local hours: 743 in March (23-hour DST day), 745 in October (25-hour
    day), 24 per day otherwise, and consecutive months neither overlap nor leave gaps.
    """
    if month_start.day != 1:
        raise ValueError(f"month_start must be the first day of a month, got {month_start}")
    last_day = calendar.monthrange(month_start.year, month_start.month)[1]
    return {
        "start_date": f"{month_start:%Y-%m}-01T00:00:00",
        "end_date": f"{month_start:%Y-%m}-{last_day:02d}T23:59:59",
        "time_trunc": "hour",
    }


class EsiosClient:
    """Indicator values through one personal token (sent as ``x-api-key``, ESIOS's header
    since 2023; the old ``Authorization: Token token=...`` is no longer accepted)."""

    def __init__(self, http: HttpClient, token: str):
        self._http = http
        self._token = token

    @property
    def http(self) -> HttpClient:
        """The underlying client, for its request/retry stats."""
        return self._http

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "x-api-key": self._token,
        }

    def indicator(self, indicator_id: int, params: dict[str, str]) -> dict[str, Any]:
        """``GET /indicators/{id}`` with ``params``; the parsed JSON object."""
        return self._http.get_json_object(
            f"/indicators/{indicator_id}", params=params, headers=self._headers()
        )

    def demand_forecast_month(self, month_start: date) -> dict[str, Any]:
        """Indicator 460 for one Spanish local month (see :func:`month_query`)."""
        return self.indicator(DEMAND_FORECAST_INDICATOR, month_query(month_start))


class EsiosResource(dg.ConfigurableResource):
    """ESIOS access. ``api_token`` arrives through ``dg.EnvVar("ESIOS_API_TOKEN")`` (never
    logged or stored); simulated mode needs none and answers from ``EsiosSimulator``."""

    source: SourceConfig = SourceConfig()
    base_url: str = ESIOS_BASE_URL
    # repr=False: a resource's repr lists its fields, a resolved dg.EnvVar included.
    api_token: str | None = Field(default=None, repr=False)
    timeout_s: float = 30.0
    max_attempts: int = 5

    def _token(self) -> str:
        token = (self.api_token or "").strip()
        if not self.source.live:
            return token or "simulated-token"
        if not token:
            raise dg.Failure(
                f"{TOKEN_ENV_VAR} is not set: SOURCE_MODE=live needs an ESIOS personal "
                "token (request one from consultasios@ree.es), sent as x-api-key"
            )
        return token

    def client(self, logger: logging.Logger | None = None) -> EsiosClient:
        """A client for the configured mode; fails at once on a missing live token."""
        token = self._token()
        adapter = self.source.adapter(
            lambda: EsiosSimulator(seed=self.source.seed, faults=self.source.faults)
        )
        http = HttpClient(
            service=SERVICE,
            base_url=self.base_url,
            key_env_var=TOKEN_ENV_VAR,
            secrets=[token],
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            adapter=adapter,
            logger=logger,
            pool_size=1,
        )
        return EsiosClient(http, token)

    def fetch_month(self, month_start: date) -> dict:
        """Indicator 460 for one Spanish local month, as parsed JSON (the raw payload)."""
        client = self.client()
        try:
            return client.demand_forecast_month(month_start)
        finally:
            client.http.close()
