"""The one HTTP base shared by every API client (OpenWeatherMap, ESIOS, NASA).

Each client used to grow its own retry loop, timeout and error text; this module does it once:
a pooled `requests.Session`, client-side rate limiting, retries with exponential backoff and
full jitter (honouring `Retry-After`), and errors that say which service, which request and why,
without ever leaking API keys (they often travel as query parameters, which requests embeds in
its exception messages and urllib3 in its DEBUG request lines).

Hostile or broken servers are bounded too: redirects are followed only within the request's
origin (requests would carry custom credential headers such as ESIOS's ``x-api-key``, and any
query-string key, to whatever host a redirect names, and over plain ``http://``); a whole
request has a deadline (requests' timeout is per socket read, so a server dripping a byte a
second never trips it); bodies are streamed against a size cap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from resources.rate_limit import RateLimiter

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_RETRY",
    "ApiAuthError",
    "ApiError",
    "ApiRateLimitError",
    "ApiRedirectError",
    "ApiResponseError",
    "HttpClient",
    "HttpStats",
    "RetryPolicy",
    "parse_retry_after",
]

_SNIPPET_CHARS = 200
DEFAULT_DEADLINE_S = 120.0
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
# An error answer is only read for its message: a few KiB is plenty, more is cut off.
_ERROR_BODY_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDACTED = "***"
_AUTH_STATUSES = frozenset({401, 403})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Anything after "?" up to whitespace or a closing quote/bracket: a query string in free text.
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\")]*")


class _HideQueryStrings(logging.Filter):
    """Replaces query strings in a record's message with "?***".

    urllib3 logs every request line at DEBUG ("GET /data/3.0/onecall?...&appid=KEY") and its
    retries and redirects with the full URL too; once anyone turns DEBUG on (for example
    Dagster's ``python_logs`` in dagster.yaml) those lines would be stored in the event log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it itself
            return True
        if "?" in message:
            record.msg, record.args = _QUERY_IN_TEXT.sub("?" + _REDACTED, message), ()
        return True


def _hide_urllib3_queries() -> None:
    """Filter every urllib3 logger: a logger's filters see only the records it creates itself,
    so the parent ``urllib3`` logger alone would not do. requests has imported them all."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name.partition(".")[0] != "urllib3":
            continue
        if not any(isinstance(f, _HideQueryStrings) for f in logger.filters):
            logger.addFilter(_HideQueryStrings())


_hide_urllib3_queries()


class ApiError(RuntimeError):
    """An API call failed for good (retries, if any, are exhausted).

    `str()` names the service, the request (query string dropped, secrets redacted) and the
    reason. `body` is the parsed JSON error body when there was one, because some APIs signal
    ordinary conditions through errors (NASA ends its 100-page search cap with an HTTP 400
    whose `reason` callers treat as a clean end).
    """

    def __init__(
        self,
        message: str,
        service: str = "",
        status: int | None = None,
        url: str = "",
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.status = status
        self.url = url
        self.body = body

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the attributes across pickling (e.g. multiprocess executors).
        return (self.__class__, (self.message, self.service, self.status, self.url, self.body))


class ApiAuthError(ApiError):
    """HTTP 401/403: the key is missing, wrong or not entitled; retrying cannot help."""


class ApiRateLimitError(ApiError):
    """HTTP 429 after every retry, or the API asked us to wait longer than we are willing to."""


class ApiResponseError(ApiError):
    """The body is not the JSON we asked for (e.g. an HTML error page served with HTTP 200),
    or is larger than the client's cap."""


class ApiRedirectError(ApiError):
    """A redirect to another origin (host, port or scheme) was refused, or redirects looped:
    following it would carry the request's credentials (headers, query-string keys) there."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up.

    Backoff is exponential with full jitter (uniform between 0 and the ceiling) so that many
    workers hitting the same outage do not retry in lockstep.
    """

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("backoff_base_s", "backoff_max_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {value!r}")
        # Accept any iterable of ints (e.g. a set literal) but keep the policy hashable.
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def backoff_ceiling_s(self, attempt: int) -> float:
        """Upper bound of the delay after failed attempt number `attempt` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)  # 2**64 * base already exceeds any sane cap
        return min(self.backoff_max_s, self.backoff_base_s * 2.0**exponent)

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay after failed attempt number `attempt` (1-based)."""
        return rng.uniform(0.0, self.backoff_ceiling_s(attempt))


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (RFC 9110: delay-seconds or an HTTP-date).

    Returns None when absent or unparseable, so the caller falls back to computed backoff.
    Dates in the past mean "retry now" (0.0). `now` is a Unix timestamp, injectable for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):  # RFC says digits; tolerate a decimal fraction
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class HttpStats:
    """Thread-safe counters for one client, for logging/metadata after a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0
        self._retries_by_reason: dict[str, int] = {}
        self._rate_limit_wait_s = 0.0

    def record_request(self) -> None:
        with self._lock:
            self._requests += 1

    def record_retry(self, reason: str) -> None:
        with self._lock:
            self._retries += 1
            self._retries_by_reason[reason] = self._retries_by_reason.get(reason, 0) + 1

    def record_rate_limit_wait(self, seconds: float) -> None:
        with self._lock:
            self._rate_limit_wait_s += seconds

    @property
    def requests(self) -> int:
        """HTTP attempts sent (each retry counts)."""
        with self._lock:
            return self._requests

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries

    @property
    def retries_by_reason(self) -> dict[str, int]:
        """A copy, e.g. {"HTTP 503": 2, "timeout": 1, "connection": 1, "malformed body": 1}."""
        with self._lock:
            return dict(self._retries_by_reason)

    @property
    def rate_limit_wait_s(self) -> float:
        with self._lock:
            return self._rate_limit_wait_s

    def snapshot(self) -> dict[str, Any]:
        """A consistent plain-dict copy of all counters."""
        with self._lock:
            return {
                "requests": self._requests,
                "retries": self._retries,
                "retries_by_reason": dict(self._retries_by_reason),
                "rate_limit_wait_s": self._rate_limit_wait_s,
            }

    def __repr__(self) -> str:
        return f"HttpStats({self.snapshot()!r})"


@dataclass
class _Failure:
    """One failed attempt: what to count/log, whether to retry, how to report it at the end."""

    reason: str  # stats key, e.g. "HTTP 503", "timeout", "connection", "malformed body"
    log_text: str
    retryable: bool
    build: Callable[[int], ApiError]  # attempts made -> the final exception
    retry_after: float | None = None
    retry_after_raw: str | None = None
    status: int | None = None
    body: Any = None


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class HttpClient:
    """A JSON/bytes GET client for one service, safe to share across a thread pool."""

    def __init__(
        self,
        *,
        service: str,
        base_url: str,
        key_env_var: str | None = None,
        secrets: Sequence[str] = (),
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        rate_limiter: RateLimiter | None = None,
        adapter: requests.adapters.BaseAdapter | None = None,
        default_headers: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        pool_size: int = 16,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_body_env_var: str | None = None,
    ) -> None:
        """``timeout_s`` bounds each socket read, ``deadline_s`` one whole attempt (request,
        same-origin redirects, body); ``max_body_bytes`` caps a body, and ``max_body_env_var``
        names the setting to raise in the error when a body is over it."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        self.service = service
        self.base_url = base_url
        self.key_env_var = key_env_var
        self.timeout_s = float(timeout_s)
        self.deadline_s = float(deadline_s)
        self.max_body_bytes = int(max_body_bytes)
        self.max_body_env_var = max_body_env_var
        self.retry = retry
        self.rate_limiter = rate_limiter
        self.stats = HttpStats()
        self._logger = logger or logging.getLogger("resources.http")
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._base_netloc = urlsplit(base_url).netloc.lower()

        env_secret = os.environ.get(key_env_var) if key_env_var else None
        self._secrets = _secret_pattern([*secrets, env_secret or ""])

        self._session = requests.Session()
        # We retry ourselves (with backoff, Retry-After and logging), so urllib3 must not.
        network = requests.adapters.HTTPAdapter(pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", network)
        self._session.mount("http://", network)
        if adapter is not None:
            # Longest prefix wins in requests, so only this service's URLs hit the simulator.
            self._session.mount(base_url.rstrip("/"), adapter)
            # No socket behind a simulator, so proxy/netrc lookups (two environment scans per
            # request in requests) are pure overhead: about 30% of a simulated call.
            self._session.trust_env = False
        if default_headers:
            self._session.headers.update(default_headers)

    # -- public API ------------------------------------------------------------------------

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET `path` (relative to base_url, or absolute) and return the decoded JSON body."""
        merged = {"Accept": "application/json", **(headers or {})}
        return self._get(path, params, merged, want_json=True)

    def get_json_object(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """``get_json`` for APIs that always answer an object: anything else (a list, a string,
        a number) is an ``ApiResponseError`` naming the request."""
        payload = self.get_json(path, params, headers)
        if not isinstance(payload, dict):
            raise ApiResponseError(
                f"{self.service} answered {type(payload).__name__}, not a JSON object, "
                f"for GET {self._log_target(path)}",
                service=self.service,
                status=200,
                url=self._log_target(path),
            )
        return payload

    def get_bytes(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """GET raw bytes (e.g. image downloads, which come as absolute URLs)."""
        return self._get(path_or_url, params, dict(headers or {}), want_json=False)

    def redact(self, text: str) -> str:
        """Replace every known secret (raw or URL-encoded in any way) in `text` with "***"."""
        return self._secrets.sub(_REDACTED, text) if self._secrets else text

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient(service={self.service!r}, base_url={self.base_url!r})"

    # -- internals -------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if urlsplit(path_or_url).scheme in ("http", "https"):
            return path_or_url
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    def _display_url(self, url: str) -> str:
        """scheme://host/path only: the query string is where API keys usually live."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return self.redact(f"{parts.scheme}://{host}{parts.path}")

    def _log_target(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc.lower() == self._base_netloc:
            return self.redact(parts.path or "/")
        return self._display_url(url)

    def _snippet(self, text: str) -> str:
        flat = " ".join(self.redact(text).split())
        if len(flat) > _SNIPPET_CHARS:
            flat = flat[: _SNIPPET_CHARS - 3] + "..."
        return flat

    def _body_text(self, content: bytes, response: requests.Response) -> str:
        try:
            return content.decode(response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know: still show something
            return content.decode("utf-8", errors="replace")

    def _api_message(self, body: Any, content: bytes, response: requests.Response) -> str:
        """The API's own explanation if it gave one, else a snippet of the body."""
        message = _find_message(body)
        if message:
            return self._snippet(message)
        text = self._body_text(content, response)
        return repr(self._snippet(text)) if text.strip() else "(empty body)"

    def _get(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        *,
        want_json: bool,
    ) -> Any:
        url = self._url(path_or_url)
        shown = self._display_url(url)
        policy = self.retry
        for attempt in range(1, policy.max_attempts + 1):
            ok, result, failure = self._attempt(url, params, headers, shown, want_json=want_json)
            if ok:
                return result
            assert failure is not None
            # Raised outside any `except` block on purpose: no __context__ chain carrying
            # requests' exception text (full URL with query-string keys).
            if not failure.retryable or attempt == policy.max_attempts:
                raise failure.build(attempt)
            if failure.retry_after is not None:
                if failure.retry_after > policy.max_retry_after_s:
                    raise self._retry_after_too_long(failure, shown)
                delay = failure.retry_after
                why = f"Retry-After: {failure.retry_after_raw}"
            else:
                delay = policy.backoff_s(attempt, self._rng)
                why = ""
            self.stats.record_retry(failure.reason)
            self._logger.warning(
                "%s",
                f"{self.service}: {failure.log_text} on GET {self._log_target(url)} "
                f"(attempt {attempt}/{policy.max_attempts}), retrying in {delay:.1f} s"
                + (f" ({why})" if why else ""),
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        shown: str,
        *,
        want_json: bool,
    ) -> tuple[bool, Any, _Failure | None]:
        """One attempt under one deadline: the request, the redirects it leads to within its
        origin (each counted and rate limited like a request), and the streamed body. Time spent
        waiting for the rate limiter is not the server's: it moves the deadline."""
        deadline = time.monotonic() + self.deadline_s
        target, query = url, params
        for hop in range(MAX_REDIRECTS + 1):
            if hop and time.monotonic() > deadline:
                return False, None, self._deadline_failure(shown, 0)
            if self.rate_limiter is not None:
                waited = self.rate_limiter.acquire()
                self.stats.record_rate_limit_wait(waited)
                deadline += waited
            self.stats.record_request()
            try:
                response = self._session.get(
                    target,
                    params=query,
                    headers=headers,
                    timeout=self.timeout_s,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                return False, None, self._exception_failure(exc, shown)
            try:
                if not response.is_redirect:
                    return self._response_outcome(response, shown, deadline, want_json=want_json)
                location = self._session.get_redirect_target(response) or ""
                next_url = requests.utils.requote_uri(urljoin(response.url, location))
                refused = self._refuse_redirect(target, next_url, response.status_code)
                if refused is not None:
                    return False, None, _Failure("redirect", "", False, lambda n, e=refused: e)
                target, query = next_url, None  # the Location carries its own query
            finally:
                response.close()
        error = ApiRedirectError(
            f"{self.service} redirected GET {self._log_target(url)} more than {MAX_REDIRECTS} "
            f"times (last to {self._display_url(target)})",
            self.service,
            None,
            shown,
        )
        return False, None, _Failure("redirect", "", False, lambda n: error)

    def _refuse_redirect(self, source: str, target: str, status: int) -> ApiRedirectError | None:
        """None if ``target`` has ``source``'s origin; else why following it is refused."""
        if _origin(target) == _origin(source):
            return None
        what = f"{self.service} redirected GET {self._log_target(source)} (HTTP {status}) to"
        if _origin(source)[0] == "https" and _origin(target)[0] != "https":
            message = (
                f"{what} plain http:// ({self._display_url(target)}): refused, so the "
                "credentials sent with the request cannot travel unencrypted"
            )
        else:
            message = (
                f"{what} {self._display_url(target)}, another origin: refused, so the "
                "credentials sent with the request cannot reach it"
            )
        return ApiRedirectError(message, self.service, status, self._display_url(source))

    def _read_body(
        self, response: requests.Response, shown: str, deadline: float, *, error: bool
    ) -> tuple[bytes, _Failure | None]:
        """The body, streamed until the deadline and at most ``max_body_bytes`` long (an error
        answer is only read for its message: its first 64 KiB, the rest is dropped)."""
        limit = _ERROR_BODY_BYTES if error else self.max_body_bytes
        status = response.status_code
        raw = response.raw
        if not isinstance(raw, urllib3.response.BaseHTTPResponse):
            # A transport adapter (the simulators) hands the body over already in memory.
            content = response.content or b""
            if len(content) > limit and not error:
                return b"", self._too_large(shown, status, len(content))
            return content[:limit], None
        declared = _content_length(response)
        if declared is not None and declared > limit and not error:
            return b"", self._too_large(shown, status, declared)
        buffer = bytearray()
        try:
            while True:
                if time.monotonic() > deadline:
                    return b"", self._deadline_failure(shown, len(buffer))
                # read1: whatever has arrived (one socket read), so the deadline is checked
                # between reads however slowly the bytes come; read() would wait for 64 KiB.
                chunk = raw.read1(_READ_CHUNK, decode_content=True)
                if not chunk:
                    return bytes(buffer), None
                buffer += chunk
                if len(buffer) > limit:
                    if error:
                        return bytes(buffer[:limit]), None
                    return b"", self._too_large(shown, status, None)
        except (ProtocolError, DecodeError, ReadTimeoutError, urllib3.exceptions.SSLError) as exc:
            # The same translation requests' iter_content makes, for one set of rules below.
            return b"", self._exception_failure(_as_requests_error(exc), shown)

    def _deadline_failure(self, shown: str, received: int) -> _Failure:
        service, deadline = self.service, f"{self.deadline_s:g} s"
        message = (
            f"{service} did not send its whole answer within the {deadline} deadline "
            f"(GET {shown}; {received} bytes received)"
        )
        return _Failure(
            reason="deadline",
            log_text=f"answer not complete within the {deadline} deadline",
            retryable=True,
            build=lambda n: ApiError(f"{message} after {_attempts(n)}", service, None, shown),
        )

    def _too_large(self, shown: str, status: int, declared: int | None) -> _Failure:
        cap = _size(self.max_body_bytes)
        seen = (
            f"Content-Length: {_size(declared)}, {declared} bytes"
            if declared is not None
            else f"stopped reading past {cap}"
        )
        hint = f"; raise {self.max_body_env_var} to allow more" if self.max_body_env_var else ""
        error = ApiResponseError(
            f"{self.service} answered more than the {cap} cap ({seen}) for GET {shown}{hint}",
            self.service,
            status,
            shown,
        )
        return _Failure("too large", "", False, lambda n: error, status=status)

    def _exception_failure(self, exc: requests.RequestException, shown: str) -> _Failure:
        service = self.service
        detail = self._exception_detail(exc)
        timed_out = isinstance(exc, requests.Timeout) or (
            # A read timeout while streaming the body surfaces as ConnectionError.
            isinstance(exc, requests.ConnectionError)
            and bool(exc.args)
            and isinstance(exc.args[0], ReadTimeoutError)
        )
        if timed_out:
            message = f"{service} did not answer within {self.timeout_s:g} s (GET {shown})"
            return _Failure(
                reason="timeout",
                log_text=f"no answer within {self.timeout_s:g} s",
                retryable=True,
                build=lambda n: ApiError(f"{message} after {_attempts(n)}", service, None, shown),
            )
        if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            message = f"{service} could not be reached (GET {shown})"
            return _Failure(
                reason="connection",
                log_text=f"connection error ({detail})",
                retryable=True,
                build=lambda n: ApiError(
                    f"{message} after {_attempts(n)}: {detail}", service, None, shown
                ),
            )
        # Invalid URL, too many redirects, ...: a bug on our side, retrying cannot help.
        return _Failure(
            reason=type(exc).__name__,
            log_text=detail,
            retryable=False,
            build=lambda n: ApiError(
                f"{service} request failed (GET {shown}): {detail}", service, None, shown
            ),
        )

    def _exception_detail(self, exc: BaseException) -> str:
        """The innermost cause of a requests/urllib3 error, redacted and without URLs' queries."""
        inner: BaseException = exc
        seen: set[int] = set()
        while id(inner) not in seen:
            seen.add(id(inner))
            nxt = getattr(inner, "reason", None)  # urllib3 MaxRetryError -> NewConnectionError
            if not isinstance(nxt, BaseException) and inner.args:
                nxt = inner.args[0]
            if not isinstance(nxt, BaseException):
                break
            inner = nxt
        text = str(inner) or type(inner).__name__
        return self._snippet(_QUERY_IN_TEXT.sub("", self.redact(text)))

    def _response_outcome(
        self, response: requests.Response, shown: str, deadline: float, *, want_json: bool
    ) -> tuple[bool, Any, _Failure | None]:
        """(True, result, None) on success, else (False, None, failure)."""
        status = response.status_code
        service = self.service
        content, failure = self._read_body(response, shown, deadline, error=not 200 <= status < 300)
        if failure is not None:
            return False, None, failure
        if 200 <= status < 300:
            if not want_json:
                return True, content, None
            try:
                return True, json.loads(content), None
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                pass
            content_type = self.redact(
                response.headers.get("Content-Type", "unknown").split(";")[0]
            )
            text = self._body_text(content, response)
            snippet = repr(self._snippet(text)) if text.strip() else "(empty body)"
            what = (
                f"{service} returned a body that is not JSON "
                f"(HTTP {status}, content-type {content_type}) for GET {shown}"
            )
            return (
                False,
                None,
                _Failure(
                    reason="malformed body",
                    log_text=f"body is not JSON (HTTP {status}, content-type {content_type})",
                    retryable=True,
                    build=lambda n: ApiResponseError(
                        f"{what} after {_attempts(n)}: {snippet}", service, status, shown
                    ),
                    status=status,
                ),
            )

        # Kept on the exception for callers to read, log or record: redacted like the message.
        body = _redact_json(_try_json(content), self.redact)
        api_message = self._api_message(body, content, response)

        if status in _AUTH_STATUSES:
            if self.key_env_var:
                message = (
                    f"{self.key_env_var} was rejected by {service} (HTTP {status}: {api_message})"
                )
            else:
                message = f"{service} rejected the request (HTTP {status}: {api_message})"
            error = ApiAuthError(f"{message} on GET {shown}", service, status, shown, body)
            return False, None, _Failure(f"HTTP {status}", "", False, lambda n: error)

        if status in self.retry.retry_statuses:
            retry_after_raw = (
                response.headers.get("Retry-After") if status in _RETRY_AFTER_STATUSES else None
            )
            if retry_after_raw is not None:
                retry_after_raw = self._snippet(retry_after_raw)
            error_type = ApiRateLimitError if status == 429 else ApiError
            what = f"{service} answered HTTP {status} (GET {shown})"
            return (
                False,
                None,
                _Failure(
                    reason=f"HTTP {status}",
                    log_text=f"HTTP {status}",
                    retryable=True,
                    build=lambda n: error_type(
                        f"{what} after {_attempts(n)}: {api_message}", service, status, shown, body
                    ),
                    retry_after=parse_retry_after(retry_after_raw),
                    retry_after_raw=retry_after_raw,
                    status=status,
                    body=body,
                ),
            )

        error = ApiError(
            f"{service} answered HTTP {status} (GET {shown}): {api_message}",
            service,
            status,
            shown,
            body,
        )
        return False, None, _Failure(f"HTTP {status}", "", False, lambda n: error)

    def _retry_after_too_long(self, failure: _Failure, shown: str) -> ApiRateLimitError:
        assert failure.retry_after is not None
        wait = failure.retry_after
        return ApiRateLimitError(
            f"{self.service} asked us to wait {_human_seconds(wait)} before retrying "
            f"(HTTP {failure.status}, Retry-After: {failure.retry_after_raw}) on GET {shown}; "
            f"that is longer than the {self.retry.max_retry_after_s:g} s we wait, giving up",
            self.service,
            failure.status,
            shown,
            failure.body,
        )


def _secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for the secrets however a URL encodes them: each character raw or as %XX
    (either case), a space also as "+". Servers and proxies re-encode the URLs they echo in
    error pages (werkzeug leaves "/" bare in a query, others write lower-case hex), so our own
    two encodings (quote, quote_plus) are not enough to recognise a key."""

    def char(c: str) -> str:
        forms = [re.escape(c), "".join(f"%{b:02X}" for b in c.encode())]
        return "(?:" + "|".join([*forms, r"\+"] if c == " " else forms) + ")"

    # Longest first, so no fragment of a longer secret survives a shorter one's match.
    unique = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not unique:
        return None
    return re.compile("|".join("".join(map(char, s)) for s in unique), re.IGNORECASE)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port): what a redirect may not change while credentials travel."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _content_length(response: requests.Response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _as_requests_error(exc: Exception) -> requests.RequestException:
    if isinstance(exc, ReadTimeoutError):
        return requests.ConnectionError(exc)  # as requests raises it from a body read
    if isinstance(exc, urllib3.exceptions.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    return requests.exceptions.ChunkedEncodingError(exc)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024, 1):g} KiB"
    return f"{round(n / (1024 * 1024), 1):g} MiB"


def _redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    """A parsed JSON value with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _redact_json(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, redact) for v in value]
    return value


def _try_json(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


# Where APIs put their human-readable explanation, most specific first.
_MESSAGE_KEYS = ("message", "msg", "error_description", "reason", "error", "detail", "description")


def _find_message(body: Any, depth: int = 0) -> str | None:
    if not isinstance(body, Mapping) or depth > 2:
        return None
    for key in _MESSAGE_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, Mapping):
            nested = _find_message(value, depth + 1)
            if nested:
                return nested
    return None


def _human_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{math.ceil(minutes)} min ({seconds:g} s)"
    return f"{minutes / 60:.1f} h ({seconds:g} s)"
