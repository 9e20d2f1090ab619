"""The FastAPI application: routes, error mapping and the model's lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

import redis
from fastapi import FastAPI, File, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__
from service.context import RequestContext, error_body
from service.errors import (
    BadRequest,
    JobNotFound,
    MethodNotAllowed,
    MissingField,
    ModelNotReady,
    QueueUnavailable,
    RouteNotFound,
    ServiceError,
)
from service.images import inspect_image, load_rgb
from service.jobs import IDEMPOTENCY_KEY_RE, JobStore, QueueCollector
from service.limits import InferenceGate
from service.metrics import ApiMetrics
from service.model import OcrModel
from service.schemas import BoxOut, Health, JobAccepted, JobView, ModelRef, PredictResponse, error_responses
from service.settings import ServiceSettings

log = logging.getLogger("service.app")

ModelFactory = Callable[[ServiceSettings], OcrModel]


def default_model_factory(settings: ServiceSettings) -> OcrModel:
    return OcrModel.from_settings(settings)


@dataclass
class ServiceState:
    settings: ServiceSettings
    metrics: ApiMetrics
    gate: InferenceGate | None = None
    model: OcrModel | None = None
    load_error: str | None = None
    shutting_down: bool = False
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.model is not None and self.model.ready and not self.shutting_down

    def model_ref(self) -> ModelRef | None:
        return ModelRef(**vars(self.model.info)) if self.model is not None else None

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        self.metrics.ready.set(0)


async def _load_model(state: ServiceState, factory: ModelFactory) -> None:
    """Load and warm the model off the event loop, so /healthz answers meanwhile."""
    try:
        start = time.perf_counter()
        model = await asyncio.to_thread(factory, state.settings)
        warm_s = await asyncio.to_thread(model.warm_up)
    except Exception as exc:
        state.load_error = str(exc)
        log.critical("model failed to load: %s", exc, exc_info=True)
        raise
    state.model = model
    state.metrics.model.info({"name": model.info.name, "version": model.info.version})
    state.metrics.ready.set(1)
    log.info(
        "model ready",
        extra={
            "model_name": model.info.name,
            "model_version": model.info.version,
            "threads": model.threads,
            "load_s": round(time.perf_counter() - start, 3),
            "warmup_s": round(warm_s, 3),
        },
    )


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def _error_response(request: Request, exc: ServiceError) -> JSONResponse:
    request.state.error = exc
    return JSONResponse(error_body(exc, _request_id(request)), status_code=exc.status, headers=exc.headers)


def create_app(
    settings: ServiceSettings,
    *,
    model_factory: ModelFactory = default_model_factory,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    metrics = ApiMetrics()
    state = ServiceState(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.gate = InferenceGate(settings.max_concurrency, settings.max_queue)
        loader = asyncio.create_task(_load_model(state, model_factory))
        if on_fatal is not None:

            def report(task: asyncio.Task[None]) -> None:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    on_fatal(error)

            loader.add_done_callback(report)
        try:
            yield
        finally:
            state.begin_shutdown()
            loader.cancel()
            state.gate.close()

    app = FastAPI(
        title="OCR inference service",
        version=__version__,
        description="PP-OCR text detection and recognition over HTTP.",
        lifespan=lifespan,
    )
    app.state.service = state

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error_response(request, MissingField("; ".join(parts)))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI wraps errors raised while the body is parsed; the upload limit raises one of ours there.
        cause = exc.__cause__
        if isinstance(cause, ServiceError):
            return _error_response(request, cause)
        mapped: ServiceError
        if exc.status_code == 404:
            mapped = RouteNotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
            mapped = MethodNotAllowed(
                f"{request.method} is not allowed on {request.url.path}", headers={"Allow": allow} if allow else None
            )
        else:
            mapped = BadRequest(str(exc.detail))
            mapped.status = exc.status_code
        return _error_response(request, mapped)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: 200 while the process can answer."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses=error_responses(503))
    async def readyz() -> JSONResponse:
        """Readiness: 200 once the model is loaded and warmed, 503 before and after SIGTERM."""
        if state.ready:
            return JSONResponse(Health(status="ready", model=state.model_ref()).model_dump())
        detail = "shutting down" if state.shutting_down else state.load_error or "model loading"
        body = Health(status="not ready", model=state.model_ref(), detail=detail)
        return JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        tags=["ocr"],
        responses=error_responses(400, 413, 415, 422, 503, 504),
    )
    async def predict(
        request: Request, file: Annotated[UploadFile, File(description="The image: PNG, JPEG, WebP, TIFF or BMP")]
    ) -> PredictResponse:
        """Read the text in one image."""
        start = time.perf_counter()
        # While draining after SIGTERM, /readyz says 503 but requests still arriving are served.
        if state.model is None or not state.model.ready or state.gate is None:
            raise ModelNotReady("the model is not loaded yet")
        data = await file.read()
        # Only the header is read here; pixels are decoded once the request holds a model slot, so
        # requests waiting in line hold compressed bytes, not decoded images, and decoding does not
        # compete with inference for the cores.
        image = inspect_image(data, max_pixels=settings.max_pixels)
        model = state.model

        def infer():  # type: ignore[no-untyped-def]
            pixels = load_rgb(image)
            t = time.perf_counter()
            result = model.read(pixels)
            metrics.inference_duration.observe(time.perf_counter() - t)
            return result

        result = await state.gate.run(infer, timeout=settings.request_timeout_s)
        return PredictResponse(
            request_id=_request_id(request),
            text=result.text,
            confidence=result.confidence,
            latency_ms=round((time.perf_counter() - start) * 1000, 2),
            boxes=[BoxOut(**vars(b)) for b in result.boxes],
            model=ModelRef(**vars(model.info)),
        )

    jobs_state: dict[str, object] = {"store": None, "group_ready": False}
    validation_slots = asyncio.Semaphore(settings.max_concurrency)

    def job_store() -> JobStore:
        if jobs_state["store"] is None:
            jobs_state["store"] = JobStore(settings)
        return jobs_state["store"]  # type: ignore[return-value]

    metrics.registry.register(QueueCollector(job_store))

    def enqueue(data: bytes, request_id: str, tenant_id: str, idempotency_key: str | None) -> tuple[str, bool]:
        store = job_store()
        try:
            if not jobs_state["group_ready"]:
                # KEDA reads the group's lag: it must exist before any worker does (scale from zero).
                store.ensure_group()
                jobs_state["group_ready"] = True
            return store.enqueue(data, request_id=request_id, tenant_id=tenant_id, idempotency_key=idempotency_key)
        except redis.RedisError as exc:
            jobs_state["group_ready"] = False
            raise QueueUnavailable(f"the job queue is unavailable: {exc}") from exc

    @app.post(
        "/jobs",
        response_model=JobAccepted,
        status_code=202,
        tags=["jobs"],
        responses=error_responses(400, 413, 415, 422, 503),
    )
    async def create_job(
        request: Request,
        file: Annotated[UploadFile, File(description="The image: PNG, JPEG, WebP, TIFF or BMP")],
        idempotency_key: Annotated[str | None, Header(description="The same key returns the same job")] = None,
    ) -> JSONResponse:
        """Queue an OCR job; the image is validated now, and read later by a worker."""
        if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise BadRequest("Idempotency-Key must be 1 to 128 printable ASCII characters")
        data = await file.read()
        image = inspect_image(data, max_pixels=settings.max_pixels)
        # A full decode proves the image is not truncated before it is queued; decodes are bounded like
        # inferences, so concurrent uploads of large images cannot exhaust the pod's memory.
        async with validation_slots:
            await asyncio.to_thread(load_rgb, image)
        tenant = str(getattr(request.state, "tenant_id", "anonymous"))
        job_id, created = await asyncio.to_thread(enqueue, data, _request_id(request), tenant, idempotency_key)
        status = 202 if created else 200
        body = JobAccepted(job_id=job_id, status="queued").model_dump()
        if not created:
            try:
                job = await asyncio.to_thread(job_store().get, job_id)
            except redis.RedisError as exc:
                raise QueueUnavailable(f"the job store is unavailable: {exc}") from exc
            body["status"] = job.status if job is not None else "queued"
        return JSONResponse(body, status_code=status, headers={"Location": f"/jobs/{job_id}"})

    @app.get("/jobs/{job_id}", response_model=JobView, tags=["jobs"], responses=error_responses(404, 503))
    async def get_job(job_id: str) -> JobView:
        """A job's state, and its result once it succeeded."""
        try:
            job = await asyncio.to_thread(job_store().get, job_id)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"the job store is unavailable: {exc}") from exc
        if job is None:
            raise JobNotFound(f"no job {job_id} (unknown, or expired after {settings.job_ttl_s}s)")
        return JobView(**job.view())

    # Unexpected errors are answered by RequestContext (as JSON, with the request id), not here:
    # Starlette runs an Exception handler outside the middleware stack.
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        max_upload_bytes=settings.max_upload_bytes,
        model_version=lambda: state.model.info.version if state.model else None,
    )
    return app
