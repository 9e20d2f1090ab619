"""What the models answer: the OCR model's ``/predict`` answer (the worker stores the same shape as a job's
result) and the layout model's, each naming the model that answered."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class CellOut(BaseModel):
    row: int = Field(ge=0, description="the first row the cell covers, from 0")
    col: int = Field(ge=0, description="the first column the cell covers, from 0")
    rowspan: int = Field(ge=1)
    colspan: int = Field(ge=1)
    x1: int
    y1: int
    x2: int
    y2: int
    text: str = Field(description="the OCR lines inside the cell, in reading order, joined by spaces")
    conf: float = Field(ge=0, le=1, description="mean confidence of those lines; 0 for an empty cell")


class TableResponse(BaseModel):
    request_id: str
    latency_ms: float = Field(description="Time spent in the service for this request")
    html: str = Field(description="the table as HTML (<table>...</table>), each cell's text escaped")
    rows: int
    columns: int
    cells: list[CellOut] = Field(description="Cells in the order of the HTML, boxes in the frame of the image as sent")
    model: ModelRef
