"""``POST /predict``: the served model's answer for one image, now (text and boxes from OCR, regions from
the layout model: ``service.models``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from PIL import Image
from pydantic import BaseModel

from service.api.deps import get_gate, get_model, get_state
from service.api.schemas import error_responses
from service.api.state import ServiceState
from service.api.uploads import OPENAPI_UPLOAD, admitted_image
from service.errors import request_id_of
from service.images import load_rgb
from service.limits import InferenceGate
from service.models import ServedModel
from service.models.schemas import LayoutResponse, PredictResponse, TableResponse

router = APIRouter(tags=["ocr"])


def infer_in_slot(decode: Callable[[], Image.Image], model: ServedModel, state: ServiceState) -> Any:
    """Decode and run the model, in the request's slot: what every inference route does (blocking)."""
    pixels = decode()
    t = time.perf_counter()
    result = model.predict(pixels)
    state.metrics.inference_duration.observe(time.perf_counter() - t)
    return result


@router.post(
    "/predict",
    response_model=PredictResponse | LayoutResponse | TableResponse,
    responses=error_responses(400, 408, 413, 415, 422, 503, 504),
    openapi_extra=OPENAPI_UPLOAD,
)
async def predict(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    model: Annotated[ServedModel, Depends(get_model)],
    gate: Annotated[InferenceGate, Depends(get_gate)],
) -> BaseModel:
    """The served model's answer for one image (multipart field ``file``): text and boxes (OCR, the
    default), regions (``OCR_MODEL=layout``), or a table as HTML and its cells (``OCR_MODEL=table``)."""
    start = time.perf_counter()
    settings = state.settings
    async with admitted_image(request, gate, max_pixels=settings.max_pixels) as upload:
        # Pixels are decoded once the request holds a model slot, so requests waiting in line hold compressed
        # bytes (spooled to disk), not decoded images, and decoding does not compete with inference.
        def decode() -> Image.Image:
            return load_rgb(upload.inspected)

        timeout = settings.request_timeout_s
        result = await upload.ticket.run(lambda: infer_in_slot(decode, model, state), timeout=timeout)
    return model.response(
        result, request_id=request_id_of(request), latency_ms=round((time.perf_counter() - start) * 1000, 2)
    )
