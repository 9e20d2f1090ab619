"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from service.api.deps import get_state
from service.api.schemas import Health, error_responses
from service.api.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: 200 while the process can answer."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=error_responses(503))
async def readyz(state: Annotated[ServiceState, Depends(get_state)]) -> JSONResponse:
    """Readiness: 200 once the model is loaded and warmed, 503 before and after SIGTERM."""
    if state.ready:
        return JSONResponse(Health(status="ready", model=state.model_ref()).model_dump())
    detail = "shutting down" if state.shutting_down else state.load_error or "model loading"
    body = Health(status="not ready", model=state.model_ref(), detail=detail)
    return JSONResponse(body.model_dump(), status_code=503)
