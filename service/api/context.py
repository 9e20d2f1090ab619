"""Per-request context as pure ASGI middleware: request id, tenant, upload limit and deadlines, access
log, metrics.

The upload limit is enforced while the body streams in: a declared ``Content-Length`` over the limit is
refused before a byte is read, and a chunked body is cut off as soon as it passes the limit. The body has
deadlines too: all of it within ``upload_timeout_s`` of the request, and never ``upload_idle_timeout_s``
without a byte; past either the request is answered 408 ``upload_timeout``, so a slow or stalled client
cannot hold an admission place (or a connection) for ever. A response sent before the body was read in
full (a refusal, a timeout) closes the connection rather than wait for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.errors import BadRequest, InvalidTenant, PayloadTooLarge, ServiceError, UploadTimeout, error_bytes
from service.headers import DEFAULT_TENANT, TENANT_RE, ascii_int
from service.metrics import ApiMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("service.access")
log = logging.getLogger("service.api.context")
# Metric labels take these methods as they are and any other token as "other": label values stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"
# A response sent before its request's body was read (a refusal) is followed by reading and dropping the rest
# of the body, for at most DRAIN_S, before the connection closes: closed with unread bytes in its buffer, the
# kernel resets it, and a client still sending (as most HTTP/1.1 clients do before they read) reads a reset
# instead of the refusal. As much as the request declares is drained, up to the upload limit; a body of
# unknown length, or one declared over the limit, up to DRAIN_BYTES. With 1 MiB for every body, 396 of 396
# refusals of 8 MB uploads were resets (bench/overload_bench.py, docs/benchmarks.md).
DRAIN_BYTES = 1024 * 1024
DRAIN_S = 2.0
DRAIN_IDLE_S = 1.0  # ... and no longer than this once nothing arrives (0.25 s cut busy clients off: 6 of 158)


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        max_upload_bytes: int,
        model_version: Callable[[], str | None],
        upload_timeout_s: float = 60.0,
        upload_idle_timeout_s: float = 10.0,
        upload_min_rate_bps: int = 0,
        upload_grace_s: float = 2.0,
        closing: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.closing = closing
        self.metrics = metrics
        self.max_upload_bytes = max_upload_bytes
        self.model_version = model_version
        self.upload_timeout_s = upload_timeout_s
        self.upload_idle_timeout_s = upload_idle_timeout_s
        self.upload_min_rate_bps = upload_min_rate_bps
        self.upload_grace_s = upload_grace_s

    def drain_limit(self, declared: int) -> int:
        """How much of an unread body is read and dropped after a refusal (see DRAIN_BYTES)."""
        return declared if DRAIN_BYTES < declared <= self.max_upload_bytes else DRAIN_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given_id = headers.get("x-request-id", "")
        request_id = given_id if REQUEST_ID_RE.match(given_id) else uuid.uuid4().hex
        tenant = headers.get("x-tenant-id", DEFAULT_TENANT)
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, tenant_id=tenant, error=None)
        declared = headers.get("content-length", "")
        has_body = _int(declared) > 0 or "chunked" in headers.get("transfer-encoding", "").lower()
        exchange = _Exchange(self, receive, send, request_id, _int(declared), body_done=not has_body)
        self.metrics.in_flight.inc()
        try:
            problem = self._refusal(headers, tenant, declared)
            if isinstance(problem, InvalidTenant):
                state["tenant_id"] = DEFAULT_TENANT
            if problem is not None:
                state["error"] = problem
                await self._reply(exchange.send, problem, request_id)
            else:
                try:
                    await self.app(scope, exchange.receive, exchange.send)
                except Exception:
                    log.exception("unhandled error", extra={"request_id": request_id})
                    if exchange.started:
                        raise
                    problem = ServiceError("internal error; see the service log for this request id")
                    state["error"] = problem
                    await self._reply(exchange.send, problem, request_id)
        finally:
            self.metrics.in_flight.dec()
            self._observe(scope, start, exchange.status, exchange.received or _int(declared))

    def _refusal(self, headers: dict[str, str], tenant: str, declared: str) -> ServiceError | None:
        """What refuses a request before the app sees it, if anything: a bad tenant, two framings of one body,
        a body declared over the limit."""
        if not TENANT_RE.match(tenant):
            return InvalidTenant("X-Tenant-ID must be 1 to 64 of the characters A-Z a-z 0-9 . _ -")
        if "content-length" in headers and "transfer-encoding" in headers:
            # Two framings of one body: whichever one a proxy in front reads, the other is a smuggled request
            # (RFC 9112, 6.1). Refused, and the connection closed unread.
            return BadRequest("a request may not have both Content-Length and Transfer-Encoding")
        if _int(declared) > self.max_upload_bytes:
            return PayloadTooLarge(f"the upload is {declared} bytes; the limit is {self.max_upload_bytes} bytes")
        return None

    def why_stalled(self, until: float, body_deadline: float, slow_at: float) -> str:
        """Which deadline a stalled upload missed. A client too slow for the minimum rate (one byte every few
        seconds holds a connection and what its request was given for as long as the other deadlines allow)
        is answered 408 as a stalled one."""
        if until == body_deadline:
            return f"the upload did not arrive within {self.upload_timeout_s:g}s"
        if until == slow_at:
            return (f"the upload arrived at under {self.upload_min_rate_bps} bytes a second "
                    f"(after {self.upload_grace_s:g}s)")  # fmt: skip
        return f"no bytes of the upload arrived for {self.upload_idle_timeout_s:g}s"

    async def _reply(self, send: Send, exc: ServiceError, request_id: str) -> None:
        body = error_bytes(exc, request_id)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        # A refused upload is not read: ask the client to close rather than drain it.
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, start: float, status: int, payload: int) -> None:
        elapsed = time.perf_counter() - start
        route_obj = scope.get("route")
        route = getattr(route_obj, "path", UNMATCHED_ROUTE)
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        state = scope["state"]
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.request_duration.labels(route, method).observe(elapsed)
        if method in ("POST", "PUT"):
            self.metrics.payload.labels(route).observe(payload)
        error: ServiceError | None = state.get("error")
        if error is not None and error.reason:
            self.metrics.rejections.labels(error.reason).inc()
        fields: dict[str, Any] = {
            "request_id": state["request_id"],
            "tenant_id": state["tenant_id"],
            "method": method,
            "path": scope["path"],
            "route": route,
            "status_code": status,
            "latency_ms": round(elapsed * 1000, 2),
            "payload_size": payload,
            "model_version": self.model_version(),
        }
        if error is not None:
            fields.update(error_code=error.code, error_message=error.message)
        level = logging.ERROR if status >= 500 and status != 503 else logging.WARNING if status >= 400 else logging.INFO
        access_log.log(level, "%s %s %s", method, scope["path"], status, extra=fields)


class _Exchange:
    """One request's body and answer as the service reads and sends them: the upload's deadlines (idle, whole,
    minimum rate after the grace period), its size limit, the request id and ``Connection: close`` on the
    answer, and the drain of an unread body after a refusal."""

    def __init__(
        self, ctx: RequestContext, receive: Receive, send: Send, request_id: str, declared: int, *, body_done: bool
    ) -> None:
        self.ctx, self._receive, self._send = ctx, receive, send
        self.request_id, self.declared = request_id, declared
        self.status, self.received, self.started, self.body_done, self.stalled = 500, 0, False, body_done, False
        self.loop = asyncio.get_running_loop()
        self.body_started = self.loop.time()
        self.body_deadline = self.body_started + ctx.upload_timeout_s

    def rate_deadline(self) -> float:
        """When the bytes received so far stop meeting the minimum rate (never inside the grace period)."""
        if not self.ctx.upload_min_rate_bps:
            return self.body_deadline
        return self.body_started + max(self.ctx.upload_grace_s, self.received / self.ctx.upload_min_rate_bps)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
            extra = [(b"x-request-id", self.request_id.encode())]
            # The rest of the body is not waited for; or the process is draining after SIGTERM: a client
            # (a gateway's connection pool) must not send its next request on a connection about to close.
            headers = list(message.get("headers", []))
            closes = any(name.lower() == b"connection" for name, _ in headers)
            if (not self.body_done or self.ctx.closing()) and not closes:
                extra.append((b"connection", b"close"))
            message["headers"] = [*headers, *extra]
        elif message["type"] == "http.response.body" and not message.get("more_body", False) and self._unread():
            # The whole answer first (its Content-Length tells the client it is complete), then the unread
            # body drained, then the close: the client reads the answer, not a reset.
            await self._send({**message, "more_body": True})
            await _drain(self._receive, self.ctx.drain_limit(self.declared) - self.received, DRAIN_S)
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)

    def _unread(self) -> bool:
        """Whether some of the body is still unread, from a client still sending it."""
        return not self.body_done and not self.stalled

    async def receive(self) -> Message:
        if self.body_done:
            return await self._receive()  # after the body: only a disconnect, whenever it comes
        now = self.loop.time()
        slow_at = self.rate_deadline()
        until = min(now + self.ctx.upload_idle_timeout_s, self.body_deadline, slow_at)
        try:
            if until <= now:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), until - now)
        except TimeoutError:
            self.stalled = True  # nothing to drain from a client this slow
            raise UploadTimeout(self.ctx.why_stalled(until, self.body_deadline, slow_at)) from None
        if message["type"] != "http.request":
            self.body_done = True
            return message
        self.received += len(message.get("body", b""))
        if not message.get("more_body", False):
            self.body_done = True
        if self.received > self.ctx.max_upload_bytes:
            raise PayloadTooLarge(f"the upload is larger than the limit of {self.ctx.max_upload_bytes} bytes")
        return message


async def _drain(receive: Receive, limit: int, seconds: float, idle_s: float = DRAIN_IDLE_S) -> int:
    """Read and drop up to ``limit`` bytes of a request body within ``seconds``, stopping early when nothing
    arrives for ``idle_s`` (a client that is not sending holds the connection no longer); the bytes read."""
    loop = asyncio.get_running_loop()
    deadline, read = loop.time() + seconds, 0
    while read < limit:
        try:
            message = await asyncio.wait_for(receive(), max(min(deadline - loop.time(), idle_s), 0.001))
        except TimeoutError:
            break
        if message["type"] != "http.request":
            break
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return read


def _int(value: str) -> int:
    return ascii_int(value) or 0
