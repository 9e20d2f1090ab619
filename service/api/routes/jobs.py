"""``POST /jobs`` and ``GET /jobs/{id}``: OCR later, by the workers, through the Redis job queue.

A job belongs to the tenant that submitted it (``X-Tenant-ID``, default ``anonymous``): another tenant's
``GET /jobs/{id}`` is answered 404, as for a job that does not exist. An Idempotency-Key is per tenant and
bound to the image it was first used with: the same image returns the same job, another image is refused
with 422 ``idempotency_key_reused``. When Redis fails, the client gets 503 ``queue_unavailable`` without
the failure's detail (it names Redis' address); the detail is logged with the request id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

import redis
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from service.api.deps import get_job_store, get_jobs_gate, get_state
from service.api.schemas import JobAccepted, JobView, error_responses
from service.api.state import ServiceState
from service.api.uploads import OPENAPI_UPLOAD, admitted_image
from service.errors import BadRequest, JobNotFound, JobsNotServed, queue_unavailable, request_id_of
from service.images import load_rgb
from service.jobs.store import IDEMPOTENCY_KEY_RE, JobStore
from service.limits import InferenceGate

router = APIRouter(tags=["jobs"])
log = logging.getLogger("service.api.routes.jobs")
T = TypeVar("T")


def _unavailable(request: Request, exc: redis.RedisError) -> Exception:
    """A Redis failure as a 503 ``queue_unavailable``. Its message names the kind of failure only; the
    failure's text (which names Redis' address) goes to the log line, with the request id."""
    log.warning(
        "job queue unavailable: %s: %s",
        type(exc).__name__,
        exc,
        extra={"request_id": request_id_of(request), "event": "queue_unavailable"},
    )
    return queue_unavailable(exc)


async def call_store(request: Request, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a job-store call off the event loop; a Redis failure is a 503 ``queue_unavailable``."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except redis.RedisError as exc:
        raise _unavailable(request, exc) from exc


@router.post(
    "/jobs",
    response_model=JobAccepted,
    status_code=202,
    responses={
        200: {"model": JobAccepted, "description": "The job this Idempotency-Key already created"},
        **error_responses(400, 404, 408, 413, 415, 422, 503, 504),
    },
    openapi_extra=OPENAPI_UPLOAD,
)
async def create_job(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    store: Annotated[JobStore, Depends(get_job_store)],
    gate: Annotated[InferenceGate, Depends(get_jobs_gate)],
    idempotency_key: Annotated[str | None, Header(description="The same key returns the same job")] = None,
) -> JSONResponse:
    """Queue an OCR job (multipart field ``file``); the image is validated now, and read later by a worker.
    The same Idempotency-Key with the same image returns the first job (200); with another image, 422.
    A service serving another model than OCR answers 404 ``jobs_not_served``: the workers run OCR only."""
    if state.settings.model != "ocr":
        raise JobsNotServed(f"jobs are served for the OCR model only; this service serves {state.settings.model!r}")
    if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1 to 128 printable ASCII characters")
    settings = state.settings
    tenant = _tenant(request)
    # Admitted before its body is read (503 past the gate's capacity); the upload spools to disk meanwhile.
    async with admitted_image(request, gate, max_pixels=settings.max_pixels) as upload:

        def validate_and_enqueue() -> tuple[str, bool]:
            # In one of the gate's slots: a full decode proves the image is not truncated before it is queued,
            # and the bytes are read only now, so the decodes and payloads in memory at once are bounded.
            # The enqueue script creates the consumer group when it is missing (KEDA reads its lag before any
            # worker exists, and again after Redis lost its data).
            load_rgb(upload.inspected)
            return store.enqueue(
                upload.read_bytes(),
                request_id=request_id_of(request),
                tenant_id=tenant,
                idempotency_key=idempotency_key,
            )

        try:
            job_id, created = await upload.ticket.run(validate_and_enqueue, timeout=settings.request_timeout_s)
        except redis.RedisError as exc:
            raise _unavailable(request, exc) from exc
    body = JobAccepted(job_id=job_id, status="queued").model_dump()
    if not created:
        job = await call_store(request, store.get, job_id, tenant_id=tenant)
        body["status"] = job.status if job is not None else "queued"
    return JSONResponse(body, status_code=202 if created else 200, headers={"Location": f"/jobs/{job_id}"})


@router.get("/jobs/{job_id}", response_model=JobView, responses=error_responses(404, 503))
async def get_job(
    job_id: str,
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    store: Annotated[JobStore, Depends(get_job_store)],
) -> JobView:
    """A job's state, and its result once it succeeded; 404 for a job another tenant submitted."""
    job = await call_store(request, store.get, job_id, tenant_id=_tenant(request))
    if job is None:
        raise JobNotFound(f"no job {job_id} (unknown, or expired after {state.settings.job_ttl_s}s)")
    return JobView(**job.view())


def _tenant(request: Request) -> str:
    """The caller's tenant, as the request context checked it (``X-Tenant-ID``, default anonymous)."""
    return str(getattr(request.state, "tenant_id", "anonymous"))
