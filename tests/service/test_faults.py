"""Faults, with real processes and nothing mocked: a Redis that hangs, and workers killed again and again.

A hung Redis is a real ``redis-server`` sent SIGSTOP: the kernel still accepts connections, nothing is ever
answered, as with a stalled node or a frozen disk; SIGCONT lets it go on with whatever it had buffered.
That is harder than a stopped Redis (connections refused at once): every call waits for its timeout.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from harness import samples, wait
from harness.components import Endpoint, redis_url, start_redis, start_service, start_worker
from service.jobs import JobStore
from service.settings import load_settings

LIVENESS_S = 1.0  # what /healthz must answer within while Redis hangs (the pods' liveness probes allow 2 s)
REDIS_TIMEOUT_S = 2.0  # OCR_REDIS_TIMEOUT_S of every process here
HANG_S = 6.0  # longer than any Redis timeout here (and redis-py's 5 s before OCR_REDIS_TIMEOUT_S)


@contextmanager
def hung(redis_ep: Endpoint) -> Iterator[None]:
    redis_ep.process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis_ep.process.signal(signal.SIGCONT)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    response = call(*args, **kwargs)
    return time.monotonic() - start, response


def sample_value(text: str, name: str) -> float | None:
    """The value of an unlabelled series in an exposition, None when the series is absent."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    return None


def post_job(api: Endpoint, data: bytes, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{api.url}/jobs", files={"file": ("a.png", data)}, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("faults")
    redis_ep = start_redis(root, root / "redis")
    env = {
        "OCR_REDIS_URL": redis_url(redis_ep),
        "OCR_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S),
        "OCR_INTRA_OP_THREADS": "1",
    }
    api = start_service(root, name="faults-api", env=env)
    try:
        yield {"redis": redis_ep, "api": api, "env": env, "root": root}
    finally:
        redis_ep.process.signal(signal.SIGCONT)
        api.process.stop()
        redis_ep.process.stop()


@pytest.fixture
def store(stack: dict[str, Any]) -> JobStore:
    return JobStore(load_settings(redis_url=stack["env"]["OCR_REDIS_URL"]))


@pytest.fixture
def worker(stack: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    endpoint = start_worker(stack["root"], name=f"worker-{request.node.name[:40]}", env=stack["env"])
    yield endpoint
    stack["redis"].process.signal(signal.SIGCONT)
    endpoint.process.stop()


def test_metrics_scrapes_never_stall_the_api_while_redis_hangs(stack: dict[str, Any], store: JobStore) -> None:
    api, redis_ep = stack["api"], stack["redis"]
    store.ensure_group()

    def scrape() -> str:
        elapsed, response = timed(httpx.get, f"{api.url}/metrics", timeout=15)
        assert response.status_code == 200 and elapsed < LIVENESS_S, f"/metrics took {elapsed:.2f}s"
        return response.text

    wait.until(lambda: sample_value(scrape(), "ocr_jobs_queue_lag"), lambda v: v is not None, timeout=10,
               what="the queue lag series")  # fmt: skip
    with hung(redis_ep), ThreadPoolExecutor(max_workers=2) as pool:
        scrapes = [pool.submit(timed, httpx.get, f"{api.url}/metrics", timeout=15) for _ in range(2)]
        time.sleep(0.3)
        for _ in range(3):
            elapsed, health = timed(httpx.get, f"{api.url}/healthz", timeout=10)
            assert health.status_code == 200 and elapsed < LIVENESS_S, f"/healthz took {elapsed:.2f}s"
        for future in scrapes:
            elapsed, response = future.result()
            assert response.status_code == 200 and elapsed < LIVENESS_S, f"/metrics took {elapsed:.2f}s"
        # Once the last reading is too old the queue series are absent, never a stale number shown as current,
        # and the age of the last reading says how stale it is.
        text = wait.until(
            scrape,
            lambda t: sample_value(t, "ocr_jobs_queue_lag") is None and sample_value(t, "ocr_jobs_pending") is None,
            timeout=15,
            what="the queue series to go absent",
        ).last
        assert (sample_value(text or "", "ocr_jobs_queue_stats_age_seconds") or 0) > 1
    wait.until(lambda: sample_value(scrape(), "ocr_jobs_queue_lag"), lambda v: v is not None, timeout=10,
               what="the queue lag series to come back")  # fmt: skip


def test_worker_metrics_and_health_answer_while_redis_hangs(stack: dict[str, Any], worker: Endpoint) -> None:
    def get(path: str) -> httpx.Response:
        elapsed, response = timed(httpx.get, f"{worker.url}{path}", timeout=15)
        assert response.status_code == 200 and elapsed < LIVENESS_S, f"worker {path} took {elapsed:.2f}s"
        return response

    wait.until(lambda: sample_value(get("/metrics").text, "ocr_jobs_queue_lag"), lambda v: v is not None,
               timeout=10, what="the worker's queue lag series")  # fmt: skip
    with hung(stack["redis"]):
        for _ in range(3):
            get("/metrics")
            get("/healthz")
        wait.until(lambda: get("/healthz").json()["redis"], lambda up: up is False, timeout=15,
                   what="the worker to notice that Redis does not answer")  # fmt: skip
        text = wait.until(lambda: get("/metrics").text, lambda t: sample_value(t, "ocr_jobs_queue_lag") is None,
                          timeout=15, what="the worker's queue series to go absent").last  # fmt: skip
        assert sample_value(text or "", "ocr_worker_redis_up") == 0
    wait.until(lambda: get("/healthz").json()["redis"], lambda up: up is True, timeout=15,
               what="the worker to reconnect")  # fmt: skip


def test_a_hung_redis_answers_jobs_503_within_the_timeout_and_predict_goes_on(stack: dict[str, Any]) -> None:
    api = stack["api"]
    queued = post_job(api, samples.text_line("Queued").encode())
    assert queued.status_code == 202, queued.text
    with hung(stack["redis"]):
        elapsed, predict = timed(
            httpx.post, f"{api.url}/predict", files={"file": ("a.png", samples.text_line("Still").encode())},
            timeout=30,
        )  # fmt: skip
        assert predict.status_code == 200 and predict.json()["text"] == "Still", predict.text
        # Many at once, more than the threads that wait on Redis: each is answered within the Redis timeout.
        with ThreadPoolExecutor(max_workers=10) as pool:
            posts = [pool.submit(timed, post_job, api, samples.text_line("Later").encode()) for _ in range(8)]
            job_url = f"{api.url}{queued.headers['location']}"
            gets = [pool.submit(timed, httpx.get, job_url, timeout=30) for _ in range(2)]
            for future in posts + gets:
                elapsed, response = future.result()
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "queue_unavailable"
                assert elapsed < REDIS_TIMEOUT_S + 1.5, f"{response.request.method} /jobs took {elapsed:.2f}s"
        elapsed, health = timed(httpx.get, f"{api.url}/healthz", timeout=10)
        assert health.status_code == 200 and elapsed < LIVENESS_S
    wait.until(lambda: post_job(api, samples.text_line("Again").encode()).status_code, lambda s: s == 202,
               timeout=10, what="/jobs to accept jobs again")  # fmt: skip
