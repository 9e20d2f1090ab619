"""Domain errors of the service, their JSON body and their HTTP mapping, in one place.

Every error reaches the client as ``{"error": {"code", "message", "request_id"}}`` with the status below;
``reason`` is the label under which ``ocr_rejections_total`` counts it (None: not a rejection).

:func:`install_handlers` maps what FastAPI and Starlette raise (validation errors, unknown routes and
methods) onto these errors; :func:`queue_unavailable` is the one mapping of a Redis failure to a 503,
for the routes and the job store alike. Unexpected exceptions are answered by the request-context
middleware (``service.api.context``), which is where the request id lives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse


class ServiceError(Exception):
    status: int = 500
    code: str = "internal_error"
    reason: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, code, reason = 400, "bad_request", "bad_request"


class InvalidTenant(BadRequest):
    code = "invalid_tenant"


class MalformedRequest(BadRequest):
    """Not valid HTTP/1.1: answered by the server protocol, before the application sees a request."""

    code = "malformed_request"


class InvalidImage(ServiceError):
    status, code, reason = 400, "invalid_image", "bad_image"


class UnsupportedMediaType(ServiceError):
    status, code, reason = 415, "unsupported_media_type", "bad_image"


class PayloadTooLarge(ServiceError):
    status, code, reason = 413, "payload_too_large", "too_large"


class ImageTooLarge(ServiceError):
    status, code, reason = 413, "image_too_large", "too_large"


class MissingField(ServiceError):
    status, code, reason = 422, "validation_error", "bad_request"


class UploadTimeout(ServiceError):
    """The request body did not arrive in time: the client is too slow, or stalled."""

    status, code, reason = 408, "upload_timeout", "timeout"


class ClientClosedRequest(ServiceError):
    """The client went away before its upload arrived: nobody reads the answer, the logs and metrics do
    (status 499, as nginx counts it: a client's doing, not a server error)."""

    status, code, reason = 499, "client_closed_request", None


class RequestTimeout(ServiceError):
    """The request head did not arrive in time: answered by the server protocol."""

    status, code, reason = 408, "request_timeout", "timeout"


class ModelNotReady(ServiceError):
    status, code, reason = 503, "model_not_ready", "not_ready"


class Overloaded(ServiceError):
    status, code, reason = 503, "overloaded", "overload"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ShuttingDown(ServiceError):
    status, code, reason = 503, "shutting_down", "overload"


class InferenceTimeout(ServiceError):
    status, code, reason = 504, "inference_timeout", "timeout"


QUEUE_RETRY_AFTER_S = 5  # a Redis failover or restart takes seconds; a client retrying sooner only adds load


class QueueUnavailable(ServiceError):
    """A 503 names when to try again, as every 503 of the service does (Retry-After)."""

    status, code, reason = 503, "queue_unavailable", "queue_unavailable"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(QUEUE_RETRY_AFTER_S), **(headers or {})})


class QueueFull(QueueUnavailable):
    code = "queue_full"


class JobNotFound(ServiceError):
    status, code, reason = 404, "job_not_found", None


class RouteNotFound(ServiceError):
    status, code, reason = 404, "not_found", None


class MethodNotAllowed(ServiceError):
    status, code, reason = 405, "method_not_allowed", None


# Errors of the other programs (start-up, settings, the job store, the admin command, the authorizer).


class ModelLoadError(Exception):
    """The model cannot be loaded; the message names the missing or unusable file."""


class IdempotencyKeyReused(ServiceError):
    """An Idempotency-Key already used for another image (the first job is kept; a new image needs a new key).

    422, as the IETF Idempotency-Key header draft answers a key reused with another payload (its 409 is for a
    request still in flight with the same key, which cannot happen here: the key is bound atomically).
    """

    status, code, reason = 422, "idempotency_key_reused", "bad_request"


class JobsNotServed(ServiceError):
    """The job workers run the OCR model only: a service serving another model (OCR_MODEL) queues no job."""

    status, code, reason = 404, "jobs_not_served", None


class ModelNotFound(ServiceError):
    status, code, reason = 404, "model_not_found", None


class ModelVersionNotFound(ServiceError):
    status, code, reason = 404, "model_version_not_found", None


class SettingsError(Exception):
    """A setting has a value the service refuses; the message names the environment variable."""


class InvalidHashes(ValueError):
    """A hashes file that does not parse; the message names a line number, never a line's content."""


class Refused(Exception):
    """The command cannot do what was asked (exit 1)."""


def invalid_settings(errors: Iterable[Mapping[str, Any]], prefix: str) -> SettingsError:
    """One SettingsError for a settings object's validation errors (pydantic's ``errors()``), naming each bad
    environment variable: ``prefix`` + the field's name, or the field's own alias when that is a variable."""
    problems = []
    for err in errors:
        field = ".".join(str(p) for p in err["loc"])
        name = field if field.startswith("OCR_") else f"{prefix}{field.upper()}" if field else "settings"
        problems.append(f"{name}: {err['msg']}")
    return SettingsError("invalid settings: " + "; ".join(problems))


def queue_unavailable(exc: BaseException, *, what: str = "the job queue") -> QueueUnavailable:
    """The error for a Redis failure (``redis.RedisError``), wherever it happens: ``raise
    queue_unavailable(exc) from exc``. The message names the kind of failure only: redis-py's text names
    Redis' address, which is for the log, not the client."""
    return QueueUnavailable(f"{what} is unavailable ({type(exc).__name__}); retry later")


def error_body(exc: ServiceError, request_id: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error the service answers."""
    return {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}


def error_bytes(exc: ServiceError, request_id: str) -> bytes:
    return json.dumps(error_body(exc, request_id)).encode()


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_response(request: Request, exc: ServiceError) -> JSONResponse:
    """The response for ``exc``; the error is kept on the request for the access log and the metrics."""
    from fastapi.responses import JSONResponse

    request.state.error = exc
    return JSONResponse(error_body(exc, request_id_of(request)), status_code=exc.status, headers=exc.headers)


def install_handlers(app: FastAPI) -> None:
    """Answer domain errors, request validation errors and Starlette's 404/405 in the service's shape."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(request, MissingField("; ".join(parts)))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # FastAPI wraps errors raised while it parses a body; the upload limit raises one of ours there.
        cause = exc.__cause__
        if isinstance(cause, ServiceError):
            return error_response(request, cause)
        mapped: ServiceError
        if exc.status_code == 404:
            mapped = RouteNotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
            mapped = MethodNotAllowed(
                f"{request.method} is not allowed on {request.url.path}", headers={"Allow": allow} if allow else None
            )
        else:
            mapped = BadRequest(str(exc.detail))
            mapped.status = exc.status_code
        return error_response(request, mapped)

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
