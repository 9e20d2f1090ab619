"""The job store's atomic operations against a real redis-server."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import wait
from harness.acceptance.components import Endpoint, redis_url, start_redis
from service.errors import IdempotencyKeyReused
from service.jobs.store import Delivery, JobStore, QueueFull
from service.settings import load_settings

MiB = 1024 * 1024


@pytest.fixture
def redis_endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = start_redis(tmp_path, tmp_path / "data")
    yield endpoint
    endpoint.process.stop()


@pytest.fixture
def make_store(redis_endpoint: Endpoint) -> Callable[..., JobStore]:
    def make(**overrides: Any) -> JobStore:
        s = JobStore(load_settings(redis_url=redis_url(redis_endpoint), **overrides))
        s.ensure_group()
        return s

    return make


@pytest.fixture
def store(make_store: Callable[..., JobStore]) -> JobStore:
    return make_store(jobs_stream_maxlen=100)


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
    assert store.retry(slow, "worker-a", "RuntimeError: late") == "not_owner"
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.result == {"text": "done"}
    assert store.redis.xlen(store.stream) == 0 and store.lag() == 0


def test_retry_by_the_owner_requeues_once(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    assert store.retry(delivery, "worker-a", "ValueError: bad") == "requeued"
    job = store.get(job_id)
    assert job is not None and (job.status, job.attempts, job.error) == ("queued", 1, "ValueError: bad")
    again = read_one(store, "worker-b")
    assert again.job_id == job_id and again.entry_id != delivery.entry_id


def test_retry_of_a_job_that_expired_meanwhile_acks_and_does_not_requeue(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    store.redis.delete(store.job_key(job_id))
    assert store.retry(delivery, "worker-a", "RuntimeError: late") == "expired"
    assert store.redis.xlen(store.stream) == 0 and store.pending() == 0 and store.lag() == 0


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


def test_lag_stays_a_number_while_an_older_job_is_still_pending(store: JobStore) -> None:
    """KEDA's lag trigger reads XINFO GROUPS ``lag``; Redis answers NULL when it cannot count past a
    deleted entry (an XDEL tombstone at or after the group's last-delivered id while an older entry is
    still in the stream). A slow job with a faster one finished behind it is exactly that shape."""
    for i in range(3):
        store.enqueue(b"img", request_id=f"r{i}", tenant_id="t")
    slow = read_one(store, "worker-a")
    fast = read_one(store, "worker-b")
    store.start(slow, "worker-a")
    store.start(fast, "worker-b")
    assert store.succeed(fast, {"text": "fast"})
    # One entry is still waiting for a worker, and the group must say so.
    assert store.lag() == 1
    assert store.pending() == 1
    # The finished entry stays behind the pending one (only a prefix is trimmed) ...
    assert store.redis.xlen(store.stream) == 3
    assert store.succeed(slow, {"text": "slow"})
    # ... and goes with it once that one is acked: only the undelivered entry is left.
    assert stream_ids(store) == [read_one(store, "worker-a").entry_id]
    assert store.lag() == 0


def stream_ids(store: JobStore) -> list[str]:
    return [eid.decode() for eid, _ in store.redis.xrange(store.stream)]  # type: ignore[union-attr]


def test_lag_stays_a_number_when_a_job_is_retried_behind_a_pending_one(store: JobStore) -> None:
    for i in range(2):
        store.enqueue(b"img", request_id=f"r{i}", tenant_id="t")
    slow = read_one(store, "worker-a")
    flaky = read_one(store, "worker-b")
    store.start(slow, "worker-a")
    store.start(flaky, "worker-b")
    assert store.retry(flaky, "worker-b", "RuntimeError: once") == "requeued"
    assert store.lag() == 1
    again = read_one(store, "worker-b")
    assert again.job_id == flaky.job_id and store.lag() == 0 and store.pending() == 2


def test_a_failed_job_leaves_the_queue_and_is_a_dead_letter(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    store.start(delivery, "worker-a")
    assert store.fail(delivery, "gave up")
    assert store.failed_ids() == [job_id]
    assert store.redis.xlen(store.stream) == 0 and store.pending() == 0 and store.lag() == 0


def test_finished_entries_kept_behind_a_pending_one_do_not_fill_the_queue(store: JobStore) -> None:
    # OCR_JOBS_STREAM_MAXLEN is 100 here: one long job plus 100 finished ones are 101 stream entries,
    # but one job still to be done.
    store.enqueue(b"img", request_id="long", tenant_id="t")
    read_one(store, "worker-a")
    for i in range(100):
        store.enqueue(b"img", request_id=f"r{i}", tenant_id="t")
        assert store.succeed(read_one(store, "worker-b"), {"text": "ok"})
    assert store.redis.xlen(store.stream) == 101
    _, created = store.enqueue(b"img", request_id="more", tenant_id="t")
    assert created and store.lag() == 1


def test_trimming_never_removes_work_and_keeps_the_lag_exact(store: JobStore) -> None:
    """Random interleavings of enqueue, delivery, success, failure, retry and takeover, checked after every
    step against a model of what must still be in the stream."""
    rng = random.Random(20261127)
    consumers = ["worker-a", "worker-b", "worker-c"]
    undelivered: list[str] = []  # entry ids, oldest first
    pending: dict[str, tuple[Delivery, str]] = {}  # entry id -> (delivery, owner)
    for _ in range(400):
        action = rng.choice(["enqueue", "read", "succeed", "fail", "retry", "claim"])
        if action == "enqueue":
            store.enqueue(b"img", request_id="r", tenant_id="t")
            undelivered.append(stream_ids(store)[-1])
        elif action == "read" and undelivered:
            consumer = rng.choice(consumers)
            delivery = read_one(store, consumer)
            assert delivery.entry_id == undelivered.pop(0)
            store.start(delivery, consumer)
            pending[delivery.entry_id] = (delivery, consumer)
        elif action in ("succeed", "fail", "retry", "claim") and pending:
            delivery, owner = pending[rng.choice(sorted(pending))]
            if action == "succeed":
                store.succeed(delivery, {"text": "ok"})
                del pending[delivery.entry_id]
            elif action == "fail":
                store.fail(delivery, "failed")
                del pending[delivery.entry_id]
            elif action == "retry":
                assert store.retry(delivery, owner, "RuntimeError: again") == "requeued"
                del pending[delivery.entry_id]
                undelivered.append(stream_ids(store)[-1])
            else:
                taker = rng.choice(consumers)
                store.redis.xclaim(store.stream, store.group, taker, 0, [delivery.entry_id])
                pending[delivery.entry_id] = (delivery, taker)
        ids = stream_ids(store)
        outstanding = sorted(pending, key=entry_key) + undelivered
        assert set(outstanding) <= set(ids), "an entry still to be done was trimmed"
        # Exactly the acked prefix is gone: the stream starts at the oldest entry still to be done.
        if outstanding:
            assert ids[0] == min(outstanding, key=entry_key)
        else:
            assert ids == []
        assert store.lag() == len(undelivered)
        assert store.pending() == len(pending)


def entry_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


# --- the queue bounded in bytes ------------------------------------------------------------------------------


def test_the_queue_is_bounded_in_bytes(make_store: Callable[..., JobStore]) -> None:
    store = make_store(max_upload_bytes=MiB, jobs_queue_max_bytes=3 * MiB)
    image = os.urandom(MiB)
    for i in range(3):
        store.enqueue(image, request_id=f"r{i}", tenant_id="t")
    with pytest.raises(QueueFull) as refused:
        store.enqueue(image, request_id="one too many", tenant_id="t", idempotency_key="order-9")
    assert refused.value.code == "queue_full" and refused.value.status == 503
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert store.redis.get(store.idem_key("t", "order-9")) is None
    assert store.redis.xlen(store.stream) == 3 and store.queued_bytes() == 3 * MiB
    # A finished job's image leaves Redis, and its bytes leave the bound.
    assert store.succeed(read_one(store, "worker-a"), {"text": "done"})
    assert store.queued_bytes() == 2 * MiB
    _, created = store.enqueue(image, request_id="room again", tenant_id="t")
    assert created


def test_redis_memory_stays_near_the_byte_bound(make_store: Callable[..., JobStore]) -> None:
    """Uploads of the largest size, one after another: Redis holds what the bound admits, not every upload.
    (Its allocator rounds a large value up to a size class, at most a quarter more.)"""
    store = make_store(max_upload_bytes=5 * MiB, jobs_queue_max_bytes=16 * MiB)
    accepted = 0
    for i in range(8):
        try:
            store.enqueue(os.urandom(5 * MiB), request_id=f"r{i}", tenant_id="t")
            accepted += 1
        except QueueFull:
            pass
    dataset = int(store.redis.info("memory")["used_memory_dataset"])  # type: ignore[index]
    assert accepted == 3
    assert dataset < 16 * MiB * 1.25, f"Redis holds {dataset / MiB:.1f} MiB of data"


def test_queued_bytes_are_released_however_a_job_ends(store: JobStore) -> None:
    ids = [store.enqueue(b"x" * size, request_id=f"r{size}", tenant_id="t")[0] for size in (100, 200, 300, 400)]
    assert store.queued_bytes() == 1000
    succeeded, failed, retried, expired = (read_one(store, "worker-a") for _ in ids)
    for delivery in (succeeded, failed, retried, expired):
        store.start(delivery, "worker-a")
    assert store.succeed(succeeded, {"text": "ok"}) and store.queued_bytes() == 900
    assert store.fail(failed, "broken") and store.queued_bytes() == 700
    # A retried job keeps its image, and its bytes.
    assert store.retry(retried, "worker-a", "RuntimeError: once") == "requeued" and store.queued_bytes() == 700
    # A record that expired took its image with it.
    store.redis.delete(store.job_key(expired.job_id))
    assert store.retry(expired, "worker-a", "RuntimeError: late") == "expired" and store.queued_bytes() == 300
    again = read_one(store, "worker-b")
    assert again.job_id == ids[2]
    store.start(again, "worker-b")
    assert store.succeed(again, {"text": "ok"}) and store.queued_bytes() == 0
    assert store.redis.xlen(store.stream) == 0


def test_an_expired_queued_job_releases_its_bytes_when_its_entry_is_dropped(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"x" * 500, request_id="r", tenant_id="t")
    store.enqueue(b"y" * 20, request_id="s", tenant_id="t")
    store.redis.delete(store.job_key(job_id))
    assert store.start(read_one(store, "worker-a"), "worker-a") is None
    assert store.queued_bytes() == 20


def test_a_redis_out_of_memory_refuses_jobs_but_lets_workers_finish(store: JobStore) -> None:
    """maxmemory with noeviction: Redis refuses writes past it. New jobs are refused as queue_full; workers
    still record outcomes, which frees the images' memory."""
    job_id, _ = store.enqueue(os.urandom(MiB), request_id="r", tenant_id="t")
    delivery = read_one(store, "worker-a")
    used = int(store.redis.info("memory")["used_memory"])  # type: ignore[index]
    store.redis.config_set("maxmemory-policy", "noeviction")
    store.redis.config_set("maxmemory", used - 256 * 1024)
    try:
        with pytest.raises(QueueFull) as refused:
            store.enqueue(b"img", request_id="no room", tenant_id="t")
        assert "memory" in refused.value.message
        job = store.start(delivery, "worker-a")
        assert job is not None and job.status == "running"
        assert store.succeed(delivery, {"text": "done"})
        finished = store.get(job_id)
        assert finished is not None and finished.status == "succeeded" and finished.image is None
        assert store.redis.xlen(store.stream) == 0
    finally:
        store.redis.config_set("maxmemory", 0)


# --- tenants and idempotency keys ----------------------------------------------------------------------------


def test_a_job_is_visible_to_its_tenant_only(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="team-a")
    mine = store.get(job_id, tenant_id="team-a")
    assert mine is not None and mine.tenant_id == "team-a"
    assert store.get(job_id, tenant_id="team-b") is None
    assert store.get(job_id, tenant_id="anonymous") is None
    assert store.get(job_id) is not None  # the operator's view (jobs_admin) is not tenant-bound


def test_an_idempotency_key_reused_with_another_image_is_refused(store: JobStore) -> None:
    first, created = store.enqueue(b"image one", request_id="1", tenant_id="t", idempotency_key="order-1")
    with pytest.raises(IdempotencyKeyReused) as reused:
        store.enqueue(b"image two", request_id="2", tenant_id="t", idempotency_key="order-1")
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 422
    assert store.redis.xlen(store.stream) == 1
    again, created_again = store.enqueue(b"image one", request_id="3", tenant_id="t", idempotency_key="order-1")
    assert (created, created_again, again) == (True, False, first)


def test_a_key_stored_before_digests_were_kept_still_returns_its_job(store: JobStore) -> None:
    job_id, _ = store.enqueue(b"img", request_id="1", tenant_id="t")
    store.redis.set(store.idem_key("t", "legacy"), job_id)
    assert store.enqueue(b"other", request_id="2", tenant_id="t", idempotency_key="legacy") == (job_id, False)


# --- Redis that lost its data --------------------------------------------------------------------------------


def test_enqueue_recreates_a_consumer_group_lost_with_the_data(store: JobStore) -> None:
    store.enqueue(b"img", request_id="before", tenant_id="t")
    store.redis.flushall()
    store.enqueue(b"img", request_id="after", tenant_id="t")
    assert store.lag() == 1
    assert read_one(store, "worker-a").job_id


# --- a Redis that does not answer ----------------------------------------------------------------------------


def test_while_redis_hangs_api_calls_fail_at_once_until_it_answers(
    redis_endpoint: Endpoint, make_store: Callable[..., JobStore]
) -> None:
    """The first call waits out its deadline; every later one fails at once, however long the hang lasts
    (no call waits on a Redis known to be silent); once Redis answers again, calls go through."""
    import signal
    import time

    import redis as redis_lib

    store = make_store(redis_timeout_s=0.5)
    job_id, _ = store.enqueue(b"img", request_id="r", tenant_id="t")
    redis_endpoint.process.signal(signal.SIGSTOP)
    try:
        with pytest.raises(redis_lib.TimeoutError):
            store.get(job_id)
        for pause in (0.0, 1.5, 1.5):  # the later ones past the probe's interval: still no waiting
            time.sleep(pause)
            start = time.monotonic()
            with pytest.raises(redis_lib.ConnectionError, match="not asking again"):
                store.get(job_id)
            assert time.monotonic() - start < 0.2
    finally:
        redis_endpoint.process.signal(signal.SIGCONT)
    wait.until(lambda: store.get(job_id), lambda job: job is not None, timeout=5, interval=0.1,
               what="calls to go through once Redis answers again")  # fmt: skip
