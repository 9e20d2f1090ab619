"""The wire format of the models other than OCR (whose ``/predict`` answer is ``service.schemas``'), and of
the Open Inference Protocol (KServe V2 REST) routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.schemas import ModelRef


class RegionOut(BaseModel):
    x1: int
    y1: int
    x2: int
    y2: int
    label: str = Field(description="text, title, figure, figure_caption, table, table_caption, header, footer, ...")
    conf: float = Field(ge=0, le=1)


class LayoutResponse(BaseModel):
    request_id: str
    latency_ms: float = Field(description="Time spent in the service for this request")
    regions: list[RegionOut] = Field(description="Regions top to bottom, in the frame of the image as sent")
    model: ModelRef


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
