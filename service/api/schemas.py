"""The wire format of the API's own routes, as the OpenAPI document shows it: errors, health, jobs and the
Open Inference Protocol (KServe V2 REST). What the models answer is :mod:`service.models.schemas`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.models.schemas import ModelRef, PredictResponse


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


# -- Open Inference Protocol ----------------------------------------------------------------------


class OipError(BaseModel):
    error: str


class OipLive(BaseModel):
    live: bool


class OipReady(BaseModel):
    ready: bool


class OipModelReady(BaseModel):
    name: str
    ready: bool


class OipServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class OipTensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class OipModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[OipTensorMetadata]
    outputs: list[OipTensorMetadata]


class OipInputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class OipRequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class OipInferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[OipInputTensor]
    outputs: list[OipRequestedOutput] | None = None


class OipOutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class OipInferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[OipOutputTensor]


def oip_error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    return {s: {"model": OipError, "description": 'The protocol\'s error: {"error": "..."}'} for s in statuses}
