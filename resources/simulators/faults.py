"""Injected faults for the API simulators: the failures real APIs produce, at a chosen rate.

``SIMULATOR_FAULT_RATE`` (0 by default) makes each simulated request fail with that
probability, so the retry, backoff and partial-failure paths run on a laptop exactly as they
would against a flaky API. A fault is one of:

- an HTTP 500, 502 (an HTML page from a proxy) or 503;
- an HTTP 429 with ``Retry-After`` (the client must wait that long);
- a timeout (``requests.ReadTimeout``, raised at once: the wall time a real timeout costs is
  the client's ``timeout_s``, which a simulation has no reason to spend);
- a malformed body with HTTP 200: the real answer cut off part-way, or an HTML error page
  where JSON was asked for. A binary download cannot be "malformed" in a way the client can
  tell, so there it is what a cut-off transfer really raises: ``ChunkedEncodingError``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

import requests

FAULT_KINDS = (
    "http_500",
    "http_502",
    "http_503",
    "http_429",
    "timeout",
    "truncated_body",
    "html_body",
)

_PROXY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_MAINTENANCE_HTML = (
    "<!DOCTYPE html><html><head><title>Service maintenance</title></head>"
    "<body><h1>We'll be back soon</h1><p>Scheduled maintenance.</p></body></html>"
)


@dataclass(frozen=True)
class FaultPlan:
    """How often and how a simulator fails: plain values, so it pickles into Spark tasks."""

    rate: float = 0.0
    seed: int | None = None  # None: a different sequence every run; an int: reproducible
    retry_after_s: int = 1
    kinds: tuple[str, ...] = FAULT_KINDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"fault rate must be in [0, 1), got {self.rate!r}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s!r}")
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown or not self.kinds:
            raise ValueError(
                f"fault kinds must be a non-empty subset of {', '.join(FAULT_KINDS)}; "
                f"got {', '.join(unknown) or 'none'}"
            )


@dataclass(frozen=True)
class Fault:
    """One injected failure: either a response to send or an exception to raise."""

    kind: str
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    exception: requests.RequestException | None = None


class FaultInjector:
    """Draws faults for one simulator; thread-safe, counts what it injected."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._injected: Counter[str] = Counter()

    @property
    def injected(self) -> dict[str, int]:
        """Faults injected so far, by kind."""
        with self._lock:
            return dict(self._injected)

    def draw(self) -> str | None:
        """The kind of fault for the next request, or None for a normal answer."""
        if self.plan.rate <= 0.0:
            return None
        with self._lock:
            if self._rng.random() >= self.plan.rate:
                return None
            kind = self._rng.choice(self.plan.kinds)
            self._injected[kind] += 1
            return kind


def wants_json(request: requests.PreparedRequest) -> bool:
    """Whether the caller asked for JSON (the shared HTTP client sends Accept for that)."""
    return "json" in (request.headers.get("Accept") or "").lower()


def build_fault(
    kind: str,
    request: requests.PreparedRequest,
    real_body: bytes | None,
    *,
    retry_after_s: int,
) -> Fault:
    """The response or exception for ``kind``; ``real_body`` is the answer a cut-off body
    is cut from (None when the simulator was not asked, e.g. for an HTTP error)."""
    if kind == "http_500":
        return Fault(kind, 500, b'{"message":"Internal Server Error (simulated fault)"}')
    if kind == "http_502":
        return Fault(kind, 502, _PROXY_HTML.encode(), "text/html")
    if kind == "http_503":
        return Fault(kind, 503, b'{"message":"Service Unavailable (simulated fault)"}')
    if kind == "http_429":
        return Fault(
            kind,
            429,
            b'{"message":"Too Many Requests (simulated fault)"}',
            None,
            (("Retry-After", str(retry_after_s)),),
        )
    if kind == "timeout":
        return Fault(
            kind,
            exception=requests.exceptions.ReadTimeout(
                "Read timed out. (simulated fault)", request=request
            ),
        )
    if not wants_json(request):
        return Fault(
            kind,
            exception=requests.exceptions.ChunkedEncodingError(
                "Connection broken: IncompleteRead (simulated fault)", request=request
            ),
        )
    if kind == "html_body":
        return Fault(kind, 200, _MAINTENANCE_HTML.encode(), "text/html; charset=utf-8")
    body = real_body or b'{"message":"simulated"}'
    return Fault(kind, 200, body[: max(1, len(body) // 2)])
