"""NASA Image and Video Library client on the shared HTTP base, and its Dagster resource.

Two hosts: ``images-api.nasa.gov`` answers ``/search`` and ``/asset/{nasa_id}`` and is rate
limited (1,000 requests an hour: a sliding-window limiter keeps us under it exactly);
``images-assets.nasa.gov`` serves the files and is not. No key is needed; ``NASA_API_KEY``, if
set, is sent as ``api_key`` (the api.nasa.gov convention) and redacted from every message.

Spark workers build their own client from a ``NasaClientSpec`` (plain, picklable values). In
live mode with a budget store (``resources.api_budget``) every run, step and task draws from one
hourly budget per key; without one, each of N parallel tasks gets 1/N of an in-process budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg
from pydantic import Field

from nasa_assets.search import SearchPage, dedupe, parse_search_page
from resources.api_budget import BudgetStore, store_from
from resources.http import DEFAULT_DEADLINE_S, HttpClient, RetryPolicy
from resources.rate_limit import RateLimiter, SlidingWindowLimiter
from resources.settings import DEFAULT_NASA_MAX_DOWNLOAD_MB, NASA_IMAGES_BASE_URL
from resources.source import SourceConfig

__all__ = [
    "ASSETS_BASE_URL",
    "PAGE_CAP",
    "REQUESTS_PER_HOUR",
    "NasaClientSpec",
    "NasaImagesClient",
    "NasaImagesResource",
    "SearchResult",
]

SERVICE = "NASA Image Library"
ASSETS_BASE_URL = "https://images-assets.nasa.gov"
KEY_ENV_VAR = "NASA_API_KEY"
BUDGET_API = "nasa_images"
REQUESTS_PER_HOUR = 1000
PAGE_CAP = 100  # the API answers HTTP 400 beyond page 100: search stops here itself
MAX_PAGE_SIZE = 100
MIB = 1024 * 1024
_NASA_HOSTS = frozenset({"images-api.nasa.gov", "images-assets.nasa.gov"})


@dataclass(frozen=True)
class SearchResult:
    """One query's de-duplicated results and how the search went."""

    query: str
    rows: list[dict[str, Any]]
    pages: int
    total_hits: int | None
    duplicates: int
    skipped: list[str]
    end: str  # why the search stopped: "last page" or "page cap: ..."


def _https(href: str) -> str:
    """NASA's manifests still write ``http://`` links to hosts that serve HTTPS."""
    parts = urlsplit(href)
    if parts.scheme == "http" and (parts.hostname or "") in _NASA_HOSTS:
        netloc = parts.netloc.removesuffix(":80")  # HTTP's default port is not HTTPS's
        return urlunsplit(("https", netloc, *parts[2:]))
    return href


class NasaImagesClient:
    """Search, asset manifests and downloads; one instance per thread or Spark task."""

    def __init__(
        self,
        api: HttpClient,
        assets: HttpClient,
        *,
        page_size: int = MAX_PAGE_SIZE,
        api_key: str | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        self.api = api
        self.assets = assets
        self.page_size = page_size
        self._key_params = {"api_key": api_key} if api_key else {}

    def search_page(self, query: str, page: int, media_type: str = "image") -> SearchPage:
        payload = self.api.get_json(
            "/search",
            params={
                "q": query,
                "media_type": media_type,
                "page": page,
                "page_size": self.page_size,
                **self._key_params,
            },
        )
        return parse_search_page(payload, query, first_rank=(page - 1) * self.page_size + 1)

    def search(
        self,
        query: str,
        *,
        media_type: str = "image",
        on_page: Callable[[int, SearchPage], None] | None = None,
    ) -> SearchResult:
        """Every page of ``query`` until the last one or page ``PAGE_CAP``, where the search
        stops by itself: the API refuses later pages with an HTTP 400, so asking for one would
        spend a request, and an HTTP 400 on an earlier page, which cannot be the cap, is an
        ``ApiError`` like any other (a search ending there would pass for complete)."""
        if not query or not query.strip():
            raise ValueError("the search query is empty")
        rows: list[dict[str, Any]] = []
        skipped: list[str] = []
        total: int | None = None
        end = "last page"
        for page in range(1, PAGE_CAP + 1):
            result = self.search_page(query, page, media_type)
            rows.extend(result.rows)
            skipped.extend(result.skipped)
            total = result.total_hits if result.total_hits is not None else total
            if on_page is not None:
                on_page(page, result)
            if not result.has_next:
                break
        else:
            end = f"page cap: the API serves at most {PAGE_CAP} pages ({total} hits, {page} read)"
        unique, duplicates = dedupe(rows)
        return SearchResult(query, unique, page, total, duplicates, skipped, end)

    def asset_manifest(self, nasa_id: str) -> Any:
        """``GET /asset/{nasa_id}``: the files published for one item."""
        return self.api.get_json(f"/asset/{quote(nasa_id, safe='')}", params=self._key_params)

    def download(self, href: str) -> bytes:
        """One file from the assets host (absolute URL from a manifest)."""
        return self.assets.get_bytes(_https(href))

    def close(self) -> None:
        self.api.close()
        self.assets.close()


@dataclass(frozen=True)
class NasaClientSpec:
    """Everything needed to build a client in another process: plain, picklable values."""

    source: SourceConfig = field(default_factory=SourceConfig)
    base_url: str = NASA_IMAGES_BASE_URL
    assets_base_url: str = ASSETS_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    requests_per_hour: int = REQUESTS_PER_HOUR
    timeout_s: float = 30.0
    max_attempts: int = 5
    page_size: int = MAX_PAGE_SIZE
    simulator_hits: int = 0  # simulated hits per query; 0: the simulator's own sizes
    simulator_latency_s: float = 0.0  # simulated network round trip per request
    max_download_bytes: int = DEFAULT_NASA_MAX_DOWNLOAD_MB * MIB  # one file, held in memory
    budget: BudgetStore | None = None  # the shared hourly budget's store; None: in-process

    def share(self, parts: int) -> NasaClientSpec:
        """The spec for one of ``parts`` parallel tasks: the same shared budget, or 1/``parts``
        of the hourly requests when the budget is in-process."""
        if self.budget is not None:
            return self
        return replace(self, requests_per_hour=max(1, self.requests_per_hour // max(1, parts)))

    def limiter(self) -> RateLimiter:
        """The API host's limiter: one hourly budget per key (no key: one for the host)."""
        if self.budget is None:
            return SlidingWindowLimiter.per_hour(self.requests_per_hour)
        return self.budget.budget(BUDGET_API, self.api_key or "", self.requests_per_hour, 3600.0)

    def _simulator(self):
        from nasa_assets.simulator import NasaImagesSimulator

        return NasaImagesSimulator(
            seed=self.source.seed,
            requests_per_hour=max(self.requests_per_hour, REQUESTS_PER_HOUR),
            default_catalog_size=self.simulator_hits or None,
            latency_s=self.simulator_latency_s,
            faults=self.source.faults,
        )

    def build(self, logger: logging.Logger | None = None) -> NasaImagesClient:
        adapter = self.source.adapter(self._simulator)
        common = {
            "key_env_var": KEY_ENV_VAR,
            "secrets": [self.api_key] if self.api_key else [],
            "timeout_s": self.timeout_s,
            "retry": RetryPolicy(max_attempts=self.max_attempts),
            "adapter": adapter,
            "logger": logger,
            "pool_size": 4,
        }
        api = HttpClient(
            service=SERVICE,
            base_url=self.base_url,
            rate_limiter=self.limiter(),
            **common,
        )
        assets = HttpClient(
            service=f"{SERVICE} assets",
            base_url=self.assets_base_url,
            max_body_bytes=self.max_download_bytes,
            max_body_env_var="NASA_MAX_DOWNLOAD_MB",
            # At least 1 MiB/s for the largest file allowed: a raised cap does not time out.
            deadline_s=max(DEFAULT_DEADLINE_S, self.max_download_bytes / MIB),
            **common,
        )
        return NasaImagesClient(api, assets, page_size=self.page_size, api_key=self.api_key)


class NasaImagesResource(dg.ConfigurableResource):
    """NASA Image Library access: real HTTP in live mode, the in-process simulator otherwise.

    ``requests_per_hour`` is the whole platform's budget on the API host (1,000 is NASA's
    documented limit); parallel Spark tasks split it between them.
    """

    source: SourceConfig = SourceConfig()
    base_url: str = NASA_IMAGES_BASE_URL
    # repr=False: a resource's repr lists its fields, a resolved dg.EnvVar included.
    api_key: str | None = Field(default=None, repr=False)
    requests_per_hour: int = REQUESTS_PER_HOUR
    timeout_s: float = 30.0
    max_attempts: int = 5
    simulator_hits: int = 0
    simulator_latency_s: float = 0.0
    max_download_mb: int = DEFAULT_NASA_MAX_DOWNLOAD_MB
    rate_limit_file: str | None = None
    rate_limit_db_url: str | None = Field(default=None, repr=False)

    def spec(self) -> NasaClientSpec:
        if self.requests_per_hour < 1:
            raise dg.Failure(f"requests_per_hour must be >= 1, got {self.requests_per_hour}")
        if self.max_download_mb < 1:
            raise dg.Failure(f"max_download_mb must be >= 1, got {self.max_download_mb}")
        return NasaClientSpec(
            source=self.source,
            base_url=self.base_url,
            api_key=(self.api_key or "").strip() or None,
            requests_per_hour=self.requests_per_hour,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            simulator_hits=self.simulator_hits,
            simulator_latency_s=self.simulator_latency_s,
            max_download_bytes=self.max_download_mb * MIB,
            # Live only: the simulator's limit is per run, and a test's runs must not wait.
            budget=store_from(self.rate_limit_file, self.rate_limit_db_url)
            if self.source.live
            else None,
        )

    def client(self, logger: logging.Logger | None = None) -> NasaImagesClient:
        return self.spec().build(logger)
