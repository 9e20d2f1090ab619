"""FastAPI dependencies: how a route gets the service's state, its model, its gate and the job store.

Everything here is made in the application's lifespan and read from ``request.app.state.service``;
a test replaces any of them with ``app.dependency_overrides[dependency] = ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from service.api.state import ServiceState
from service.errors import ModelNotReady, QueueUnavailable, ShuttingDown

if TYPE_CHECKING:
    from service.jobs.store import JobStore
    from service.limits import InferenceGate
    from service.models import ServedModel
    from service.settings import ServiceSettings


def get_state(request: Request) -> ServiceState:
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


def get_settings(request: Request) -> ServiceSettings:
    return get_state(request).settings


def get_model(request: Request) -> ServedModel:
    """The loaded, warm model; 503 ``model_not_ready`` before that. While draining after SIGTERM /readyz
    says 503, but requests still arriving are served."""
    model = get_state(request).model
    if model is None or not model.ready:
        raise ModelNotReady("the model is not loaded yet")
    return model


def get_gate(request: Request) -> InferenceGate:
    gate = get_state(request).gate
    if gate is None:
        raise ShuttingDown("the service is not accepting work")
    return gate


def get_jobs_gate(request: Request) -> InferenceGate:
    gate = get_state(request).jobs_gate
    if gate is None:
        raise ShuttingDown("the service is not accepting work")
    return gate


def get_job_store(request: Request) -> JobStore:
    store = get_state(request).job_store
    if store is None:
        raise QueueUnavailable("the job queue is not configured")
    return store
