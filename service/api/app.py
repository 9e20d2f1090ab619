"""The FastAPI application: its lifespan (gates, job store, model) and its parts put together.

Routes live in ``service.api.routes`` (one module per concern), reach the state through the dependencies of
``service.api.deps``, and raise the errors of ``service.errors``, whose handlers answer them as JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from service import __version__, models
from service.api.context import RequestContext
from service.api.routes import ROUTERS, v2
from service.api.state import ServiceState
from service.errors import install_handlers
from service.jobs.store import JobStore, QueueCollector
from service.limits import InferenceGate
from service.metrics import ApiMetrics
from service.models import ServedModel
from service.settings import ServiceSettings
from service.startup import LoadedModel, label_version

__all__ = ["ModelFactory", "ServiceState", "create_app"]

log = logging.getLogger("service.api.app")

ModelFactory = Callable[[ServiceSettings], ServedModel]


def _load(settings: ServiceSettings, factory: ModelFactory | None) -> LoadedModel:
    """The model ``OCR_MODEL`` selects (``service.models``), loaded and warmed (blocking: seconds)."""
    start = time.perf_counter()
    model = (factory or models.load)(settings)
    label_version(model, settings)
    loaded = time.perf_counter()
    return LoadedModel(model=model, load_s=loaded - start, warmup_s=model.warm_up())  # type: ignore[arg-type]


async def _load_model(state: ServiceState, factory: ModelFactory | None) -> None:
    """Load and warm the model off the event loop, so /healthz answers meanwhile."""
    try:
        loaded = await asyncio.to_thread(_load, state.settings, factory)
    except Exception as exc:
        state.load_error = str(exc)
        log.critical("model failed to load: %s", exc, exc_info=True)
        raise
    model = loaded.model
    state.model = model
    # The model's identity, as every response and log line carry it.
    state.metrics.model.info(
        {"name": model.info.name, "version": model.info.version, "digest": model.info.digest, "kind": model.kind}
    )
    state.metrics.ready.set(1)
    log.info("model ready", extra=loaded.log_fields())


def create_app(
    settings: ServiceSettings,
    *,
    model_factory: ModelFactory | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The API. ``model_factory`` replaces how the model is made (default: from the settings)."""
    metrics = ApiMetrics()
    state = ServiceState(settings=settings, metrics=metrics)

    def job_store() -> JobStore:
        if state.job_store is None:
            raise redis.ConnectionError("the job store is not open")
        return state.job_store

    # The queue's lag and pending entries, read from Redis in the collector's own thread: the backlog stays
    # visible while the workers are at zero, and a scrape never waits on Redis.
    queue_stats = QueueCollector(job_store)
    metrics.registry.register(queue_stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Admission of uploads, one gate a route: /predict's slots run the model, /jobs' validate and enqueue.
        state.gate = InferenceGate(settings.max_concurrency, settings.max_queue, name="inference")
        state.jobs_gate = InferenceGate(settings.max_concurrency, settings.max_queue, name="jobs")
        state.job_store = JobStore(settings)  # connects on first use
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
            state.jobs_gate.close()
            queue_stats.close()
            state.job_store.redis.close()

    app = FastAPI(
        title="OCR inference service",
        version=__version__,
        description="PP-OCR text detection and recognition over HTTP.",
        lifespan=lifespan,
    )
    app.state.service = state
    install_handlers(app)
    v2.install_error_shape(app)  # the Open Inference Protocol's {"error": "..."} under /v2
    for router in ROUTERS:
        app.include_router(router)
    # Unexpected errors are answered by RequestContext (as JSON, with the request id), not by a handler:
    # Starlette runs an Exception handler outside the middleware stack.
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        max_upload_bytes=settings.max_upload_bytes,
        model_version=lambda: state.model.info.version if state.model else None,
        closing=lambda: state.shutting_down,
        upload_timeout_s=settings.upload_timeout_s,
        upload_idle_timeout_s=settings.upload_idle_timeout_s,
        upload_min_rate_bps=settings.upload_min_rate_bps,
        upload_grace_s=settings.upload_grace_s,
    )
    return app
