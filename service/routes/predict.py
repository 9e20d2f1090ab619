"""``POST /predict``: read the text in one image, now."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.deps import get_gate, get_model, get_state
from service.errors import request_id_of
from service.images import load_rgb
from service.limits import InferenceGate
from service.model import OcrModel, OcrResult
from service.schemas import PredictResponse, build_predict_response, error_responses
from service.state import ServiceState
from service.uploads import OPENAPI_UPLOAD, admitted_image

router = APIRouter(tags=["ocr"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(400, 408, 413, 415, 422, 503, 504),
    openapi_extra=OPENAPI_UPLOAD,
)
async def predict(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    model: Annotated[OcrModel, Depends(get_model)],
    gate: Annotated[InferenceGate, Depends(get_gate)],
) -> PredictResponse:
    """Read the text in one image (multipart field ``file``)."""
    start = time.perf_counter()
    settings = state.settings
    metrics = state.metrics
    async with admitted_image(request, gate, max_pixels=settings.max_pixels) as upload:
        # Pixels are decoded once the request holds a model slot, so requests waiting in line hold compressed
        # bytes (spooled to disk), not decoded images, and decoding does not compete with inference.
        def infer() -> OcrResult:
            pixels = load_rgb(upload.inspected)
            t = time.perf_counter()
            result = model.read(pixels)
            metrics.inference_duration.observe(time.perf_counter() - t)
            return result

        result = await upload.ticket.run(infer, timeout=settings.request_timeout_s)
    return build_predict_response(
        result, model.info, request_id=request_id_of(request), latency_ms=round((time.perf_counter() - start) * 1000, 2)
    )
