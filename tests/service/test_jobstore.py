"""The job store's atomic operations against a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.components import start_redis
from service.jobs import Delivery, JobStore, QueueFull
from service.settings import load_settings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    endpoint = start_redis(tmp_path, tmp_path / "data")
    s = JobStore(load_settings(redis_url=f"redis://127.0.0.1:{endpoint.port}/0", jobs_stream_maxlen=100))
    s.ensure_group()
    yield s
    endpoint.process.stop()


def read_one(store: JobStore, consumer: str) -> Delivery:
    (delivery,) = store.read(consumer, block_ms=100)
    return delivery


def test_a_refused_enqueue_leaves_no_idempotency_key_behind(store: JobStore) -> None:
    for i in range(100):
        store.enqueue(b"img", request_id=f"r{i}", tenant_id="t")
    with pytest.raises(QueueFull):
        store.enqueue(b"img", request_id="full", tenant_id="t", idempotency_key="order-1")
    assert store.redis.get(store.idem_key("t", "order-1")) is None
    store.redis.delete(store.stream)
    store.ensure_group()
    job_id, created = store.enqueue(b"img", request_id="again", tenant_id="t", idempotency_key="order-1")
    assert created and store.get(job_id) is not None


def test_idempotency_keys_are_per_tenant(store: JobStore) -> None:
    a, created_a = store.enqueue(b"img", request_id="1", tenant_id="team-a", idempotency_key="order-1")
    again, created_again = store.enqueue(b"img", request_id="2", tenant_id="team-a", idempotency_key="order-1")
    b, created_b = store.enqueue(b"img", request_id="3", tenant_id="team-b", idempotency_key="order-1")
    assert (created_a, created_again, created_b) == (True, False, True)
    assert a == again != b


def test_a_worker_that_lost_its_entry_cannot_requeue_a_finished_job(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    slow = read_one(store, "worker-a")
    store.start(slow, "worker-a")
    # worker-a goes silent; worker-b claims the entry and finishes the job.
    store.redis.xclaim(store.stream, store.group, "worker-b", 0, [slow.entry_id])
    store.start(slow, "worker-b")
    assert store.succeed(slow, {"text": "done"})
    # worker-a wakes up with a failure: it must not undo the outcome.
    assert store.retry(slow, "worker-a", "RuntimeError: late") is False
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.result == {"text": "done"}
    assert store.redis.xlen(store.stream) == 0 and store.lag() == 0


def test_retry_by_the_owner_requeues_once(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    assert store.retry(delivery, "worker-a", "ValueError: bad") is True
    job = store.get(job_id)
    assert job is not None and (job.status, job.attempts, job.error) == ("queued", 1, "ValueError: bad")
    again = read_one(store, "worker-b")
    assert again.job_id == job_id and again.entry_id != delivery.entry_id


def test_start_does_not_touch_a_finished_job(store: JobStore) -> None:
    store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    store.succeed(delivery, {"text": "done"})
    job = store.start(delivery, "worker-b")
    assert job is not None and (job.status, job.attempts, job.worker) == ("succeeded", 1, "worker-a")


def test_second_outcome_is_refused(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    assert store.succeed(delivery, {"text": "first"}) is True
    assert store.fail(delivery, "late failure") is False
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.image is None
    assert job_id not in store.failed_ids()


def test_expired_job_is_dropped(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    store.redis.delete(store.job_key(job_id))
    assert store.start(read_one(store, "worker-a"), "worker-a") is None
    assert not store.redis.exists(store.job_key(job_id))
