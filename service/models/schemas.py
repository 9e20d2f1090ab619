"""What the models answer: the OCR model's ``/predict`` answer (the worker stores the same shape as a job's
result) and the layout model's, each naming the model that answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from service.models.ocr import ModelInfo, OcrResult


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
