"""The wire format of the API, as the OpenAPI document shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from service.model import ModelInfo, OcrResult


class ModelRef(BaseModel):
    name: str
    version: str = Field(description="OCR_MODEL_VERSION when set, else the runtime's version and a digest prefix")
    digest: str = Field("", description="SHA-256 of the model files")


class BoxOut(BaseModel):
    x1: int
    y1: int
    x2: int
    y2: int
    text: str
    conf: float = Field(ge=0, le=1)


class PredictResponse(BaseModel):
    request_id: str
    text: str = Field(description='The lines in reading order, joined by "\\n"')
    confidence: float = Field(ge=0, le=1, description="Mean line confidence; 0 when nothing is read")
    latency_ms: float = Field(description="Time spent in the service for this request")
    boxes: list[BoxOut] = Field(description="Axis-aligned integer boxes in the frame of the image as sent")
    model: ModelRef


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    model: ModelRef | None = None
    detail: str | None = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    descriptions = {
        400: "Bad image or header",
        404: "Not found",
        413: "Upload or image too large",
        415: "Not an image in a supported format",
        408: "The upload did not arrive within the upload deadline",
        422: "A required field is missing, or an Idempotency-Key already used with another image",
        503: "Not ready, overloaded (with Retry-After) or queue unavailable",
        504: "Inference took longer than the request timeout",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


class JobAccepted(BaseModel):
    job_id: str
    status: str = Field(description="queued")


class JobView(BaseModel):
    job_id: str
    status: str = Field(description="queued, running, succeeded or failed")
    attempts: int
    created_at: str | None
    updated_at: str | None
    started_at: str | None = None
    finished_at: str | None = None
    result: PredictResponse | None = Field(None, description="The /predict response, once succeeded")
    error: str | None = Field(None, description="Why the job failed (or why the last attempt failed)")


def build_predict_response(
    result: OcrResult, model: ModelInfo, *, request_id: str, latency_ms: float
) -> PredictResponse:
    """The /predict answer for one OCR result: the API returns it, the worker stores its ``model_dump()``
    as a job's result, so both give the same shape."""
    return PredictResponse(
        request_id=request_id,
        text=result.text,
        confidence=result.confidence,
        latency_ms=latency_ms,
        boxes=[BoxOut(**vars(b)) for b in result.boxes],
        model=ModelRef(name=model.name, version=model.version, digest=getattr(model, "digest", "")),
    )
