"""The HTTP/1.1 server protocol: uvicorn's h11 protocol, with the service's answers where uvicorn has its own.

Some requests never reach the application, so its middleware cannot answer them:

* a request that is not valid HTTP/1.1 (a bare CR or LF in a header, a malformed request line, bad
  framing): h11 rejects it while parsing, and uvicorn would answer a plain-text 400 with no request id.
  Here it is the service's JSON error, ``400 malformed_request``, with a new request id in the body and in
  ``X-Request-ID``, logged and counted (route ``unmatched``) like any other request. The client's own
  ``X-Request-ID`` cannot be trusted from a request that did not parse, so a new one is made.
* a request head that never ends: uvicorn waits for it without a deadline (its keep-alive timeout only
  applies between requests, and any byte cancels it). Here the head must be complete within
  ``header_timeout_s`` of the connection opening or of the previous response: past it the connection is
  closed, with ``408 request_timeout`` when part of a head had arrived.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from service.errors import MalformedRequest, RequestTimeout, ServiceError, error_bytes
from service.metrics import ApiMetrics

log = logging.getLogger("service.api.server")
UNMATCHED_ROUTE = "unmatched"


def _raw_response(exc: ServiceError, request_id: str) -> bytes:
    body = error_bytes(exc, request_id)
    head = (
        f"HTTP/1.1 {exc.status} {'Bad Request' if exc.status == 400 else 'Request Timeout'}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nx-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ServiceH11Protocol(H11Protocol):
    """h11 with the service's JSON answers to malformed requests, and a deadline on request heads."""

    header_timeout_s: float = 10.0
    metrics: ApiMetrics | None = None
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head was parsed
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_late)

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        partial, _ = self.conn.trailing_data
        if partial:
            problem = RequestTimeout(f"the request head did not arrive within {self.header_timeout_s:g}s")
            self._answer(problem, "the request head did not arrive in time")
        else:  # an idle keep-alive connection: nothing to answer
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        problem = MalformedRequest(
            "the request is not valid HTTP/1.1 (a header with a bare CR or LF or another forbidden"
            " character, a malformed request line, or bad framing)"
        )
        self._answer(problem, msg)

    def _answer(self, problem: ServiceError, detail: str) -> None:
        request_id = uuid.uuid4().hex
        fields: dict[str, Any] = {
            "request_id": request_id,
            "status_code": problem.status,
            "route": UNMATCHED_ROUTE,
            "error_code": problem.code,
            "error_message": problem.message,
            "client": f"{self.client[0]}:{self.client[1]}" if self.client else None,
        }
        log.warning("%s: %s", problem.code, detail, extra=fields)
        if self.metrics is not None:
            self.metrics.requests.labels(UNMATCHED_ROUTE, "other", str(problem.status)).inc()
            if problem.reason:
                self.metrics.rejections.labels(problem.reason).inc()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(problem, request_id))
            self.transport.close()


def protocol_class(*, header_timeout_s: float, metrics: ApiMetrics | None = None) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    attributes = {"header_timeout_s": header_timeout_s, "metrics": metrics}
    return type("ServiceH11Protocol", (ServiceH11Protocol,), attributes)
