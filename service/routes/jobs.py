"""``POST /jobs`` and ``GET /jobs/{id}``: OCR later, by the workers, through the Redis job queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

import redis
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from service.deps import get_job_store, get_state
from service.errors import BadRequest, JobNotFound, queue_unavailable, request_id_of
from service.images import load_rgb
from service.jobs import IDEMPOTENCY_KEY_RE, JobStore
from service.schemas import JobAccepted, JobView, error_responses
from service.state import ServiceState
from service.uploads import OPENAPI_UPLOAD, receive_image

router = APIRouter(tags=["jobs"])
T = TypeVar("T")


async def call_store(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a job-store call off the event loop; a Redis failure is a 503 ``queue_unavailable``."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except redis.RedisError as exc:
        raise queue_unavailable(exc) from exc


def _enqueue(
    state: ServiceState, store: JobStore, data: bytes, request_id: str, tenant_id: str, key: str | None
) -> tuple[str, bool]:
    try:
        if not state.job_group_ready:
            # KEDA reads the group's lag: it must exist before any worker does (scale from zero).
            store.ensure_group()
            state.job_group_ready = True
        return store.enqueue(data, request_id=request_id, tenant_id=tenant_id, idempotency_key=key)
    except redis.RedisError:
        state.job_group_ready = False
        raise


@router.post(
    "/jobs",
    response_model=JobAccepted,
    status_code=202,
    responses=error_responses(400, 413, 415, 422, 503),
    openapi_extra=OPENAPI_UPLOAD,
)
async def create_job(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    store: Annotated[JobStore, Depends(get_job_store)],
    idempotency_key: Annotated[str | None, Header(description="The same key returns the same job")] = None,
) -> JSONResponse:
    """Queue an OCR job (multipart field ``file``); the image is validated now, and read later by a worker."""
    if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1 to 128 printable ASCII characters")
    settings = state.settings
    received = await receive_image(request, max_pixels=settings.max_pixels)
    # A full decode proves the image is not truncated before it is queued; decodes are bounded like
    # inferences, so concurrent uploads of large images cannot exhaust the pod's memory.
    slots = state.extras.setdefault("validation_slots", asyncio.Semaphore(settings.max_concurrency))
    assert isinstance(slots, asyncio.Semaphore)
    async with slots:
        await asyncio.to_thread(load_rgb, received.image)
    tenant = str(getattr(request.state, "tenant_id", "anonymous"))
    job_id, created = await call_store(
        _enqueue, state, store, received.data, request_id_of(request), tenant, idempotency_key
    )
    body = JobAccepted(job_id=job_id, status="queued").model_dump()
    if not created:
        job = await call_store(store.get, job_id)
        body["status"] = job.status if job is not None else "queued"
    return JSONResponse(body, status_code=202 if created else 200, headers={"Location": f"/jobs/{job_id}"})


@router.get("/jobs/{job_id}", response_model=JobView, responses=error_responses(404, 503))
async def get_job(
    job_id: str,
    state: Annotated[ServiceState, Depends(get_state)],
    store: Annotated[JobStore, Depends(get_job_store)],
) -> JobView:
    """A job's state, and its result once it succeeded."""
    job = await call_store(store.get, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id} (unknown, or expired after {state.settings.job_ttl_s}s)")
    return JobView(**job.view())
