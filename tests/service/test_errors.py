"""Error mapping that needs a fault the real model does not produce: a model that raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi.testclient import TestClient

from harness import wait
from harness.acceptance.components import Endpoint
from harness.ports import free_port
from harness.provisioning import samples
from service.api.app import create_app
from service.api.deps import get_job_store
from service.errors import QueueUnavailable, queue_unavailable
from service.jobs.store import JobStore
from service.models.ocr import ModelInfo
from service.settings import load_settings


@dataclass
class BrokenModel:
    """Stands in for the model only to make inference raise; everything around it is the real app."""

    info: ModelInfo = field(default_factory=lambda: ModelInfo("broken", "0"))
    ready: bool = True
    threads: int = 1

    def warm_up(self) -> float:
        return 0.0

    def read(self, image: object) -> object:
        raise RuntimeError("the graph exploded")


def test_unexpected_error_is_json_500_with_the_request_id() -> None:
    app = create_app(load_settings(), model_factory=lambda s: BrokenModel())  # type: ignore[arg-type,return-value]
    with TestClient(app, raise_server_exceptions=False) as client:
        wait.until(lambda: client.get("/readyz").status_code, lambda s: s == 200, timeout=10, what="ready")
        response = client.post(
            "/predict", files={"file": ("a.png", samples.text_line("x").encode())}, headers={"X-Request-ID": "boom-1"}
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "internal error; see the service log for this request id",
        "request_id": "boom-1",
    }
    assert "exploded" not in response.text  # internals stay in the log


def test_unknown_http_methods_share_one_metric_label() -> None:
    # In-process: httptools (uvicorn[standard]) refuses unknown methods on the wire, h11 (plain uvicorn,
    # as in the image) passes them to the app, so the app must bound the label itself.
    app = create_app(load_settings(), model_factory=lambda s: BrokenModel())  # type: ignore[arg-type,return-value]
    with TestClient(app) as client:
        assert client.request("FOOBAR1", "/predict").status_code == 405
        metrics = client.get("/metrics").text
    assert 'method="FOOBAR1"' not in metrics
    assert 'ocr_http_requests_total{method="other",route="/predict",status="405"}' in metrics


def test_405_names_the_allowed_methods(service: Endpoint) -> None:
    response = httpx.get(f"{service.url}/predict")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_a_job_store_that_cannot_reach_redis_answers_503_queue_unavailable() -> None:
    # The job store is a dependency: here one whose Redis is a loopback port nobody listens on.
    down = JobStore(load_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    app = create_app(load_settings(), model_factory=lambda s: BrokenModel())  # type: ignore[arg-type,return-value]
    app.dependency_overrides[get_job_store] = lambda: down
    with TestClient(app) as client:
        lookup = client.get(f"/jobs/{'0' * 32}", headers={"X-Request-ID": "redis-down-1"})
        submit = client.post("/jobs", files={"file": ("a.png", samples.text_line("Queued").encode())})
    for response in (lookup, submit):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "queue_unavailable"
        assert "unavailable" in response.json()["error"]["message"]
        assert "127.0.0.1" not in response.text  # redis-py names the address: for the log only
    assert lookup.json()["error"]["request_id"] == "redis-down-1"


def test_queue_unavailable_names_the_failure() -> None:
    error = queue_unavailable(ConnectionRefusedError("refused"), what="the job store")
    assert isinstance(error, QueueUnavailable) and error.status == 503
    assert error.message == "the job store is unavailable (ConnectionRefusedError); retry later"
