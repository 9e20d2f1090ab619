"""Domain errors of the service and their HTTP mapping, in one place.

Every error reaches the client as ``{"error": {"code", "message", "request_id"}}`` with the status below;
``reason`` is the label under which ``ocr_rejections_total`` counts it (None: not a rejection).
"""

from __future__ import annotations


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


class QueueUnavailable(ServiceError):
    status, code, reason = 503, "queue_unavailable", "queue_unavailable"


class JobNotFound(ServiceError):
    status, code, reason = 404, "job_not_found", None


class RouteNotFound(ServiceError):
    status, code, reason = 404, "not_found", None


class MethodNotAllowed(ServiceError):
    status, code, reason = 405, "method_not_allowed", None
