"""Build real ``requests.Response`` objects for in-process API simulators.

Simulators are transport adapters, so the client code under test keeps using
``response.json()``, ``raise_for_status()``, ``response.headers`` and retries unchanged;
these helpers fill in what ``requests.adapters.HTTPAdapter`` would have.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from resources.simulators.faults import FaultInjector, FaultPlan, build_fault

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def json_bytes(payload: Any) -> bytes:
    """Compact JSON, as most APIs send it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_response(
    request: requests.PreparedRequest,
    status: int,
    body: bytes | str | Any,
    *,
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON_CONTENT_TYPE,
    connection: requests.adapters.BaseAdapter | None = None,
) -> requests.Response:
    """A fully populated response; ``body`` is sent as-is if bytes/str, else as JSON.

    Bytes let a simulator return an API's error body byte for byte (spacing included).
    """
    if isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode("utf-8")
    else:
        content = json_bytes(body)
    response = requests.Response()
    response.status_code = status
    try:
        response.reason = HTTPStatus(status).phrase
    except ValueError:
        response.reason = ""
    response.headers = CaseInsensitiveDict(
        {**(headers or {}), "Content-Type": content_type, "Content-Length": str(len(content))}
    )
    response._content = content
    # Marks the body as already read, so iter_content()/stream=True replay _content.
    response._content_consumed = True
    response.raw = io.BytesIO(content)
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    response.elapsed = timedelta(0)
    response.connection = connection
    return response


class SimulatorAdapter(BaseAdapter):
    """Base of the in-process API simulators: counts calls and turns ``answer()`` into a
    ``requests.Response``, so each simulator only says what its API would answer.

    ``faults`` (see :mod:`resources.simulators.faults`) makes a share of requests fail the way
    real APIs do, before or instead of the simulator's own answer.
    """

    server_headers: Mapping[str, str] = {}

    def __init__(self, faults: FaultPlan | None = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._calls = 0
        self.faults = FaultInjector(faults or FaultPlan())

    @property
    def calls(self) -> int:
        """Total requests answered (any status)."""
        return self._calls

    def answer(self, request: requests.PreparedRequest) -> tuple[int, Any, str | None]:
        """``(status, body, content type or None for JSON)`` for one request."""
        raise NotImplementedError

    def respond(
        self, request: requests.PreparedRequest
    ) -> tuple[int, Any, str | None, Mapping[str, str]]:
        """``answer()`` plus the response headers; override when headers vary per response
        (e.g. rate-limit state)."""
        status, body, content_type = self.answer(request)
        return status, body, content_type, self.server_headers

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        """Answer one request; never touches the network."""
        with self._lock:
            self._calls += 1
        kind = self.faults.draw()
        if kind is not None:
            return self._fault(request, kind)
        status, body, content_type, headers = self.respond(request)
        return build_response(
            request,
            status,
            body,
            headers=headers,
            content_type=content_type or JSON_CONTENT_TYPE,
            connection=self,
        )

    def _fault(self, request: requests.PreparedRequest, kind: str) -> requests.Response:
        real_body = None
        if kind == "truncated_body":
            # Cut from the answer the API would have sent (it was processed, then cut off).
            _, body, _, _ = self.respond(request)
            if isinstance(body, str):
                body = body.encode("utf-8")
            real_body = body if isinstance(body, bytes) else json_bytes(body)
        fault = build_fault(kind, request, real_body, retry_after_s=self.faults.plan.retry_after_s)
        if fault.exception is not None:
            raise fault.exception
        return build_response(
            request,
            fault.status,
            fault.body,
            headers={**self.server_headers, **dict(fault.headers)},
            content_type=fault.content_type or JSON_CONTENT_TYPE,
            connection=self,
        )

    def close(self) -> None:
        """Nothing to release: no sockets, no pools."""
