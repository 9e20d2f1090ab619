"""The job API and workers with a real Redis, real service and real worker processes."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from harness import wait
from harness.acceptance.components import Endpoint, start_redis, start_service, start_worker
from harness.provisioning import samples
from service.jobs.store import JobStore
from service.settings import load_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Endpoint]]:
    root = tmp_path_factory.mktemp("jobs")
    redis_ep = start_redis(root, root / "redis")
    env = {"OCR_REDIS_URL": f"redis://127.0.0.1:{redis_ep.port}/0", "OCR_JOB_TTL_S": "3"}
    api = start_service(root, name="jobs-api", env=env)
    yield {"redis": redis_ep, "api": api, "env": env, "root": root}  # type: ignore[dict-item]
    api.process.stop()
    redis_ep.process.stop()


def store_for(stack: dict) -> JobStore:
    return JobStore(load_settings(redis_url=stack["env"]["OCR_REDIS_URL"]))


def post_job(api: Endpoint, data: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{api.url}/jobs", files={"file": ("a.png", data)}, headers=headers, timeout=30)


def test_enqueue_answers_202_with_location_and_creates_the_group(stack: dict) -> None:
    response = post_job(stack["api"], samples.text_line("Queued").encode())
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.json()["status"] == "queued"
    assert response.headers["location"] == f"/jobs/{job_id}"
    view = httpx.get(f"{stack['api'].url}{response.headers['location']}").json()
    assert view["status"] == "queued" and view["attempts"] == 0 and view["result"] is None
    assert view["created_at"].endswith("Z")
    # KEDA reads this group's lag before any worker exists.
    assert store_for(stack).lag() is not None and store_for(stack).lag() >= 1


def test_idempotency_key_returns_the_same_job(stack: dict) -> None:
    data = samples.text_line("Once").encode()
    first = post_job(stack["api"], data, **{"Idempotency-Key": "order-77"})
    second = post_job(stack["api"], data, **{"Idempotency-Key": "order-77"})
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["job_id"] == second.json()["job_id"]
    other = post_job(stack["api"], data, **{"Idempotency-Key": "order-78"})
    assert other.json()["job_id"] != first.json()["job_id"]


def test_bad_image_is_refused_and_not_queued(stack: dict) -> None:
    store = store_for(stack)
    before = store.redis.xlen(store.stream)
    response = post_job(stack["api"], samples.truncated_png())
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"
    assert store.redis.xlen(store.stream) == before


def test_bad_idempotency_key_is_refused(stack: dict) -> None:
    response = post_job(stack["api"], samples.text_line("x").encode(), **{"Idempotency-Key": "x" * 200})
    assert response.status_code == 400


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job-id"])
def test_unknown_job_is_404(stack: dict, job_id: str) -> None:
    response = httpx.get(f"{stack['api'].url}/jobs/{job_id}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_job_expires_after_its_ttl(stack: dict) -> None:
    job_id = post_job(stack["api"], samples.text_line("Short lived").encode()).json()["job_id"]
    wait.until(
        lambda: httpx.get(f"{stack['api'].url}/jobs/{job_id}").status_code,
        lambda status: status == 404,
        timeout=10,
        what="the job to expire (OCR_JOB_TTL_S=3)",
    )


@pytest.fixture(scope="module")
def no_redis_api(stack: dict) -> Iterator[Endpoint]:
    """An API whose Redis is nowhere: port 1 of loopback refuses every connection."""
    api = start_service(stack["root"], name="jobs-no-redis", env={"OCR_REDIS_URL": "redis://127.0.0.1:1/0"})
    yield api
    api.process.stop()


def test_redis_down_answers_503_and_predict_keeps_working(no_redis_api: Endpoint) -> None:
    api = no_redis_api
    response = post_job(api, samples.text_line("Nowhere").encode())
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "queue_unavailable"
    assert httpx.get(f"{api.url}/jobs/{'0' * 32}").status_code == 503
    predict = httpx.post(f"{api.url}/predict", files={"file": ("a.png", samples.text_line("Still").encode())})
    assert predict.status_code == 200 and predict.json()["text"] == "Still"


def test_queue_unavailable_never_shows_the_redis_address_and_logs_it_with_the_request_id(
    no_redis_api: Endpoint,
) -> None:
    api = no_redis_api
    for response in (
        post_job(api, samples.text_line("Nowhere").encode(), **{"X-Request-ID": "hide-post"}),
        httpx.get(f"{api.url}/jobs/{'0' * 32}", headers={"X-Request-ID": "hide-get"}),
    ):
        assert response.status_code == 503, response.text
        message = response.json()["error"]["message"]
        assert "127.0.0.1" not in message and ":1" not in message and "connecting" not in message, message
    lines = [json.loads(x) for x in api.process.log_text().splitlines() if x.startswith("{")]
    for request_id in ("hide-post", "hide-get"):
        mine = [line for line in lines if line.get("request_id") == request_id]
        assert any("127.0.0.1:1" in json.dumps(line) for line in mine), mine


def test_a_job_is_found_by_its_tenant_only(stack: dict) -> None:
    api = stack["api"]
    response = post_job(api, samples.text_line("Team A only").encode(), **{"X-Tenant-ID": "team-a"})
    assert response.status_code == 202, response.text
    url = f"{api.url}{response.headers['location']}"
    assert httpx.get(url, headers={"X-Tenant-ID": "team-a"}).status_code == 200
    unknown = httpx.get(f"{api.url}/jobs/{'0' * 32}", headers={"X-Tenant-ID": "team-b"}).json()["error"]
    for headers in ({"X-Tenant-ID": "team-b"}, {}):  # no header: the tenant is "anonymous"
        other = httpx.get(url, headers=headers)
        assert other.status_code == 404, other.text
        error = other.json()["error"]
        # Indistinguishable from a job that does not exist.
        assert error["code"] == unknown["code"] == "job_not_found"
        assert error["message"].replace(url.rsplit("/", 1)[1], "0" * 32) == unknown["message"]
        assert "team-a" not in other.text


def test_an_idempotency_key_reused_with_another_image_answers_422(stack: dict) -> None:
    api = stack["api"]
    headers = {"Idempotency-Key": "order-422", "X-Tenant-ID": "team-a"}
    first = post_job(api, samples.text_line("First").encode(), **headers)
    assert first.status_code == 202, first.text
    reused = post_job(api, samples.text_line("Second").encode(), **headers)
    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    again = post_job(api, samples.text_line("First").encode(), **headers)
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]


def test_worker_survives_a_redis_restart_and_loses_no_job(tmp_path: Path) -> None:
    redis_ep = start_redis(tmp_path, tmp_path / "data", appendonly=True)
    port = redis_ep.port
    env = {"OCR_REDIS_URL": f"redis://127.0.0.1:{port}/0", "OCR_INTRA_OP_THREADS": "1"}
    api = start_service(tmp_path, name="api", env=env)
    worker = start_worker(tmp_path, name="worker-r", env=env)
    try:

        def status(job_id: str) -> str:
            return httpx.get(f"{api.url}/jobs/{job_id}").json().get("status", "?")

        first = post_job(api, samples.text_line("Before").encode()).json()["job_id"]
        wait.until(lambda: status(first), lambda s: s == "succeeded", timeout=60, what="first job")

        assert redis_ep.process.stop() == 0
        # The outage: the worker backs off and stays alive, the API answers 503.
        wait.until(
            lambda: httpx.get(f"{worker.url}/healthz").json()["redis"],
            lambda up: up is False,
            timeout=20,
            what="the worker to notice Redis is down",
        )
        assert post_job(api, samples.text_line("During").encode()).status_code == 503
        assert worker.process.alive()

        redis_ep = start_redis(tmp_path, tmp_path / "data", name="redis-again", port=port, appendonly=True)
        # Until its probe finds Redis back (within a second), the API answers 503 without asking Redis.
        accepted = wait.until(
            lambda: post_job(api, samples.text_line("After").encode()),
            lambda response: response.status_code == 202,
            timeout=10,
            what="the API to queue jobs again",
        )
        second = accepted.last.json()["job_id"]  # type: ignore[union-attr]
        wait.until(lambda: status(second), lambda s: s == "succeeded", timeout=60, what="job after the restart")
        assert status(first) == "succeeded"  # persisted across the restart
        assert worker.process.alive()
    finally:
        worker.process.signal(signal.SIGTERM)
        try:
            worker_exit = worker.process.wait_exit(30)
        finally:
            worker.process.stop()
            api.process.stop()
            redis_ep.process.stop()
    assert worker_exit == 0


def scraped(api: Endpoint, name: str) -> float | None:
    metrics = httpx.get(f"{api.url}/metrics").text
    return next((float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(f"{name} ")), None)


def test_the_api_exports_the_queue_lag_while_no_worker_runs(stack: dict) -> None:
    post_job(stack["api"], samples.text_line("Waiting").encode())
    expected = store_for(stack).lag()
    assert expected is not None and expected >= 1
    # Read from Redis every second in the background, never while a scrape waits.
    wait.until(lambda: scraped(stack["api"], "ocr_jobs_queue_lag"), lambda lag: lag == expected, timeout=10,
               what=f"the scraped lag to read {expected}")  # fmt: skip


def test_the_job_path_works_with_an_authenticated_redis(tmp_path: Path) -> None:
    import redis as redis_lib

    from harness.acceptance.components import redis_url

    endpoint = start_redis(tmp_path, tmp_path / "data", password="s3cret-pass-for-test")
    api = start_service(tmp_path, name="api-auth", env={"OCR_REDIS_URL": redis_url(endpoint)})
    try:
        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis(port=endpoint.port).ping()
        response = post_job(api, samples.text_line("Authenticated").encode())
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert httpx.get(f"{api.url}/jobs/{job_id}").json()["status"] == "queued"
        # The password is neither on redis-server's command line nor in the service's log.
        assert "s3cret-pass-for-test" not in " ".join(endpoint.process.argv)
        assert "s3cret-pass-for-test" not in api.process.log_text()
    finally:
        api.process.stop()
        endpoint.process.stop()


def noise_png(seed: int, side: int = 100) -> bytes:
    """An incompressible image: its PNG is about side * side * 3 bytes."""
    import io
    import random

    from PIL import Image

    pixels = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, "PNG")
    return out.getvalue()


def test_the_queue_is_bounded_in_bytes_and_answers_queue_full(stack: dict) -> None:
    env = {
        **stack["env"], "OCR_JOBS_STREAM": "bounded:jobs", "OCR_MAX_UPLOAD_BYTES": "40000",
        "OCR_JOBS_QUEUE_MAX_BYTES": "100000",
    }  # fmt: skip
    api = start_service(stack["root"], name="jobs-api-bounded", env=env)
    try:
        images = [noise_png(seed) for seed in range(4)]
        assert all(30_000 < len(image) < 40_000 for image in images)
        for image in images[:3]:
            assert post_job(api, image).status_code == 202
        full = post_job(api, images[3])
        assert full.status_code == 503, full.text
        assert full.json()["error"]["code"] == "queue_full" and int(full.headers["retry-after"]) >= 1
    finally:
        api.process.stop()


def test_the_next_job_recreates_a_consumer_group_lost_with_the_data(stack: dict) -> None:
    """Redis restarted without persistence (or FLUSHALL) after the API's first enqueue: the next job recreates
    the group, so the lag KEDA scales on exists again with no worker running."""
    store = store_for(stack)
    assert post_job(stack["api"], samples.text_line("Before the flush").encode()).status_code == 202
    store.redis.flushall()
    assert post_job(stack["api"], samples.text_line("After the flush").encode()).status_code == 202
    assert store.lag() == 1


def test_the_metrics_read_recreates_a_consumer_group_lost_with_the_data(stack: dict) -> None:
    store = store_for(stack)
    wait.until(lambda: scraped(stack["api"], "ocr_jobs_queue_lag"), lambda lag: lag is not None, timeout=10,
               what="the lag series")  # fmt: skip
    store.redis.flushall()
    # The scrape answers the collector's last read, which may predate the flush: the group itself is watched
    # in Redis (nothing but the API's collector touches it here), then the scrape must agree.
    wait.until(lambda: group_lag(store), lambda lag: lag == 0, timeout=10,
               what="the metrics read to recreate the group")  # fmt: skip
    wait.until(lambda: scraped(stack["api"], "ocr_jobs_queue_lag"), lambda lag: lag == 0, timeout=10,
               what="the scraped lag of the recreated group")  # fmt: skip


def group_lag(store: JobStore) -> int | None:
    """The group's lag, None while the stream (or the group) does not exist."""
    try:
        return store.lag()
    except redis.ResponseError:
        return None
