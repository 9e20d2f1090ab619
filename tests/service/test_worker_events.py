"""The worker's job events: every log line about a job names what happened in a stable ``event`` field.

The store is a real redis-server and the worker's code runs as it does in production; only the model is
a stand-in, so a test can decide what happens while a job "runs" (another worker takes the entry over,
the job gets an outcome elsewhere, it expires). One test runs real worker processes end to end.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from harness import wait
from harness.acceptance.components import Endpoint, redis_url, start_redis, start_worker
from harness.provisioning import samples
from service.errors import QueueFull
from service.jobs.store import Delivery, JobStore
from service.jobs.worker import Worker
from service.logs import JsonFormatter
from service.models.ocr import ModelInfo
from service.settings import load_settings

IMAGE = samples.text_line("Events").encode()


class StandInModel:
    """Runs ``during`` in place of inference: it returns a reading or raises, as the test needs."""

    info = ModelInfo(name="stand-in", version="0")

    def __init__(self) -> None:
        self.during: Callable[[], None] = lambda: None

    def read(self, image: object) -> SimpleNamespace:
        self.during()
        return SimpleNamespace(text="Events", confidence=0.99, boxes=[])


class JsonLines(logging.Handler):
    """The worker's log lines as the JSON objects the service writes (through its own formatter)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def events(self) -> list[str]:
        return [line["event"] for line in self.lines if "event" in line]


@pytest.fixture
def redis_endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = start_redis(tmp_path, tmp_path / "data")
    yield endpoint
    endpoint.process.stop()


@pytest.fixture
def captured() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("service.jobs.worker")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def make_worker(redis_endpoint: Endpoint) -> Callable[..., tuple[Worker, StandInModel]]:
    def make(name: str = "worker-a", **overrides: Any) -> tuple[Worker, StandInModel]:
        settings = load_settings(redis_url=redis_url(redis_endpoint), worker_name=name, **overrides)
        model = StandInModel()
        worker = Worker(settings, model, JobStore(settings))  # type: ignore[arg-type]
        worker.store.ensure_group()
        return worker, model

    return make


def enqueue_and_read(worker: Worker) -> tuple[str, Delivery]:
    job_id, _ = worker.store.enqueue(IMAGE, request_id="req-1", tenant_id="t")
    (delivery,) = worker.store.read(worker.name, block_ms=100)
    return job_id, delivery


def fail_with(exc: Exception) -> Callable[[], None]:
    def during() -> None:
        raise exc

    return during


def test_a_job_that_succeeds_says_started_then_succeeded(make_worker: Callable, captured: JsonLines) -> None:
    worker, _ = make_worker()
    job_id, delivery = enqueue_and_read(worker)
    worker.process(delivery)
    assert captured.events() == ["job_started", "job_succeeded"]
    for line in captured.lines:
        assert (line["job_id"], line["worker"], line["attempt"], line["request_id"]) == (job_id, "worker-a", 1, "req-1")


def test_failed_attempts_are_retried_then_the_job_fails(make_worker: Callable, captured: JsonLines) -> None:
    worker, model = make_worker(max_attempts=2)
    model.during = fail_with(RuntimeError("bad page"))
    job_id, delivery = enqueue_and_read(worker)
    worker.process(delivery)
    (again,) = worker.store.read(worker.name, block_ms=100)
    worker.process(again)
    assert captured.events() == ["job_started", "job_retried", "job_started", "job_failed"]
    assert [line["attempt"] for line in captured.lines] == [1, 1, 2, 2]
    assert captured.lines[-1]["level"] == "error"
    assert worker.store.failed_ids() == [job_id]


def test_an_attempt_that_lost_its_entry_says_retry_lost(make_worker: Callable, captured: JsonLines) -> None:
    worker, model = make_worker()
    _, delivery = enqueue_and_read(worker)

    def taken_over_then_failing() -> None:
        worker.store.redis.xclaim(worker.store.stream, worker.store.group, "worker-b", 0, [delivery.entry_id])
        raise RuntimeError("late")

    model.during = taken_over_then_failing
    worker.process(delivery)
    assert captured.events() == ["job_started", "job_retry_lost"]
    assert worker.store.pending() == 1  # the entry is worker-b's now, untouched


@pytest.mark.parametrize("succeeds", [True, False], ids=["result", "failure"])
def test_an_attempt_ending_after_the_job_has_an_outcome_is_discarded(
    make_worker: Callable, captured: JsonLines, succeeds: bool
) -> None:
    worker, model = make_worker()
    job_id, delivery = enqueue_and_read(worker)

    def finished_elsewhere() -> None:
        worker.store.redis.hset(worker.store.job_key(job_id), mapping={"status": "succeeded", "result": "{}"})
        if not succeeds:
            raise RuntimeError("late")

    model.during = finished_elsewhere
    worker.process(delivery)
    assert captured.events() == ["job_started", "job_outcome_discarded"]


def test_a_last_attempt_failing_after_the_job_has_an_outcome_is_discarded(
    make_worker: Callable, captured: JsonLines
) -> None:
    worker, model = make_worker(max_attempts=1)
    job_id, delivery = enqueue_and_read(worker)

    def finished_elsewhere() -> None:
        worker.store.redis.hset(worker.store.job_key(job_id), mapping={"status": "succeeded", "result": "{}"})
        raise RuntimeError("late")

    model.during = finished_elsewhere
    worker.process(delivery)
    assert captured.events() == ["job_started", "job_outcome_discarded"]
    assert worker.store.failed_ids() == []


def test_a_job_that_expired_says_so(make_worker: Callable, captured: JsonLines) -> None:
    worker, _ = make_worker()
    job_id, delivery = enqueue_and_read(worker)
    worker.store.redis.delete(worker.store.job_key(job_id))
    worker.process(delivery)
    assert captured.events() == ["job_expired"]
    assert captured.lines[0]["job_id"] == job_id and captured.lines[0]["attempt"] is None


def test_a_job_that_expired_while_it_ran_says_so(make_worker: Callable, captured: JsonLines) -> None:
    worker, model = make_worker()
    job_id, delivery = enqueue_and_read(worker)

    def expiring() -> None:
        worker.store.redis.delete(worker.store.job_key(job_id))
        raise RuntimeError("late")

    model.during = expiring
    worker.process(delivery)
    assert captured.events() == ["job_started", "job_expired"]


def test_an_entry_delivered_again_after_its_outcome_is_dropped(make_worker: Callable, captured: JsonLines) -> None:
    worker, _ = make_worker()
    _, delivery = enqueue_and_read(worker)
    worker.process(delivery)
    worker.process(delivery)  # as if the entry had been claimed before the first worker acked it
    assert captured.events() == ["job_started", "job_succeeded", "job_already_finished"]


def test_the_loop_reports_an_entry_claimed_from_a_silent_worker(make_worker: Callable, captured: JsonLines) -> None:
    worker, _ = make_worker(request_timeout_s=0.1, visibility_timeout_s=0.5)
    job_id, _ = worker.store.enqueue(IMAGE, request_id="req-1", tenant_id="t")
    worker.store.read("silent", block_ms=100)  # a worker that took the entry, then died
    # The real loop, in a thread, stopped once the job is done.
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait.until(captured.events, lambda events: "job_succeeded" in events, timeout=20, what="the claimed job")
    finally:
        worker.stopping.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert captured.events() == ["job_claimed", "job_started", "job_succeeded"]
    assert {line["job_id"] for line in captured.lines if "event" in line} == {job_id}


def test_worker_processes_write_the_events_in_their_json_log(tmp_path: Path) -> None:
    """End to end: real worker processes, the real model and logging set up as in production."""
    redis_ep = start_redis(tmp_path, tmp_path / "data")
    env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_INTRA_OP_THREADS": "1"}
    store = JobStore(load_settings(redis_url=env["OCR_REDIS_URL"]))
    store.ensure_group()
    good, _ = store.enqueue(IMAGE, request_id="good", tenant_id="t")
    poison, _ = store.enqueue(b"\x89PNG damaged record", request_id="poison", tenant_id="t")
    worker = start_worker(tmp_path, name="worker-events", env=env)
    try:

        def events() -> list[dict[str, Any]]:
            lines = [json.loads(x) for x in worker.process.log_text().splitlines() if x.startswith("{")]
            return [line for line in lines if "event" in line]

        wait.until(
            lambda: {(e["job_id"], e["event"]) for e in events()},
            lambda seen: {(good, "job_succeeded"), (poison, "job_failed")} <= seen,
            timeout=60,
            what="both jobs to end",
        )
        by_job: dict[str, list[tuple[str, int]]] = {}
        for e in events():
            assert e["worker"] == "worker-events"
            by_job.setdefault(e["job_id"], []).append((e["event"], e["attempt"]))
        assert by_job[good] == [("job_started", 1), ("job_succeeded", 1)]
        assert by_job[poison] == [
            ("job_started", 1), ("job_retried", 1),
            ("job_started", 2), ("job_retried", 2),
            ("job_started", 3), ("job_failed", 3),
        ]  # fmt: skip
        assert httpx.get(f"{worker.url}/healthz").json()["status"] == "ok"
    finally:
        worker.process.signal(signal.SIGTERM)
        try:
            assert worker.process.wait_exit(30) == 0
        finally:
            worker.process.stop()
            redis_ep.process.stop()


def test_a_worker_started_on_a_full_redis_drains_it(make_worker: Callable, captured: JsonLines) -> None:
    """maxmemory with noeviction, and Redis full of queued images: a worker (re)started then must still run
    them, since each finished job frees its image; nothing it needs may be refused for want of memory."""
    worker, _ = make_worker()
    redis = worker.store.redis
    padded = IMAGE + bytes(1024 * 1024)  # decoders stop at the image's end
    ids = [worker.store.enqueue(padded, request_id=f"big-{i}", tenant_id="t")[0] for i in range(3)]
    used = int(redis.info("memory")["used_memory_dataset"])  # type: ignore[index]
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", used - 2 * 1024 * 1024)
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        with pytest.raises(QueueFull):
            worker.store.enqueue(IMAGE, request_id="no room", tenant_id="t")
        thread.start()
        wait.until(
            lambda: [worker.store.get(i).status for i in ids],  # type: ignore[union-attr]
            lambda statuses: statuses == ["succeeded"] * 3,
            timeout=20,
            what="the worker to drain a full Redis",
        )
    finally:
        worker.stopping.set()
        thread.join(timeout=10)
        redis.config_set("maxmemory", 0)
    assert captured.events().count("job_succeeded") == 3
