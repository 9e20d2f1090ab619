"""The Prometheus exposition of the API's metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import get_state
from service.api.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(state: Annotated[ServiceState, Depends(get_state)]) -> Response:
    """Prometheus exposition format."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
