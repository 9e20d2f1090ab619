"""What the API holds while it runs: settings, metrics, the admission gates, the model and the job store.

One :class:`ServiceState` per application, made by ``create_app`` and filled by its lifespan (gates and job
store at start-up, the model once it is loaded and warm). Routes never reach it directly: they ask for it,
or for a part of it, through the dependencies in ``service.api.deps``, which tests can override.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.models.schemas import ModelRef

if TYPE_CHECKING:
    from service.jobs.store import JobStore
    from service.limits import InferenceGate
    from service.metrics import ApiMetrics
    from service.models import ServedModel
    from service.settings import ServiceSettings


@dataclass
class ServiceState:
    settings: ServiceSettings
    metrics: ApiMetrics
    gate: InferenceGate | None = None  # /predict
    jobs_gate: InferenceGate | None = None  # /jobs: validation and enqueue
    job_store: JobStore | None = None
    model: ServedModel | None = None  # the plugin OCR_MODEL selects
    load_error: str | None = None
    shutting_down: bool = False

    @property
    def ready(self) -> bool:
        return self.model is not None and self.model.ready and not self.shutting_down

    def model_ref(self) -> ModelRef | None:
        return ModelRef(**vars(self.model.info)) if self.model is not None else None

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        self.metrics.ready.set(0)
