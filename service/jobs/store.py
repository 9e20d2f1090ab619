"""The job queue and result store: Redis Streams for the queue, one hash per job for its state.

Layout (names from settings, defaults shown)::

    ocr:jobs                stream; each entry {"job_id"}; consumer group "ocr-workers"
    ocr:job:<id>            hash: status, attempts, created_at, updated_at, started_at, finished_at,
                            worker, request_id, tenant_id, image (bytes until done), result (JSON), error
    ocr:idem:<tenant>:<key> "<job id>:<sha256 of the image>" for an Idempotency-Key already used
    ocr:jobs:queued-bytes   the image bytes of the jobs still to be done (the queue's byte bound)
    ocr:jobs:queued-sizes   hash: job id -> its image's bytes, for each of those jobs
    ocr:jobs:failed         list of the last 10,000 jobs that ended failed (the dead letters), newest first

Enqueue writes the idempotency key, the hash, the stream entry and the image's bytes in one Lua script, so
a job is never half-created; the script also recreates the consumer group when Redis lost it (a restart
without persistence, FLUSHALL). Workers ack an entry only after its outcome is stored; an entry left
pending by a dead worker is claimed by a live one after the visibility timeout.

**Memory.** The queue is bounded by count (``OCR_JOBS_STREAM_MAXLEN``) and by the bytes of the images it
holds (``OCR_JOBS_QUEUE_MAX_BYTES``), both checked in the enqueue script. An image leaves Redis when its
job gets an outcome (or its record expires), and its bytes leave the bound then. Redis itself runs with
``maxmemory`` and ``noeviction``: the enqueue script is refused whole when Redis is full (answered as a
full queue), while the workers' scripts are flagged ``allow-oom``: recording an outcome deletes an image,
so it must go on when Redis is full, or a full Redis could never drain.

Acked entries leave the stream by ``XTRIM MINID``, never by ``XDEL``: every ack trims the stream up to
the oldest entry still pending or not yet delivered. ``XDEL`` leaves a tombstone, and Redis (7.x,
``streamCGLag``) answers a NULL ``lag`` in ``XINFO GROUPS`` whenever a tombstone lies at or after the
group's last-delivered id while older entries remain, i.e. whenever a job finishes while an older one is
still running. KEDA's lag trigger reads that NULL as "no backlog". Trimming only ever removes a prefix,
leaves no tombstone, and so keeps ``lag`` an exact count of entries not yet delivered. The price: acked
entries behind a still-pending one stay in the stream until that one is acked too, so the stream holds
the work not yet done plus, at most, finished entries queued after the oldest job still running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.errors import IdempotencyKeyReused, QueueFull
from service.jobs import lua
from service.settings import ServiceSettings

log = logging.getLogger("service.jobs.store")

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
DEAD_LETTERS = "ocr:jobs:failed"
DEAD_LETTERS_KEPT = 10_000

FAIL_FAST_S = 1.0  # while Redis does not answer, it is probed this often; API calls fail at once (JobStore)
PROBE_FOR_S = 60.0  # then the probe gives up, and the next API call asks Redis itself
QUEUE_FULL_RETRY_AFTER_S = 30

RetryResult = Literal["requeued", "not_owner", "ended", "expired"]


# What the retry script's answer means.
_RETRY_RESULTS: dict[int, RetryResult] = {1: "requeued", 0: "not_owner", 2: "ended", 3: "expired"}


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    job_id: str
    status: str
    attempts: int
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    request_id: str | None = None
    tenant_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    image: bytes | None = None

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[bytes, bytes]) -> Job:
        f = {k.decode(): v for k, v in raw.items()}

        def text(key: str) -> str | None:
            return f[key].decode() if key in f else None

        def number(key: str) -> float | None:
            return float(f[key]) if key in f else None

        return cls(
            job_id=job_id,
            status=text("status") or "queued",
            attempts=int(f.get("attempts", b"0")),
            created_at=number("created_at") or 0.0,
            updated_at=number("updated_at") or 0.0,
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            worker=text("worker"),
            request_id=text("request_id"),
            tenant_id=text("tenant_id"),
            result=json.loads(f["result"]) if "result" in f else None,
            error=text("error"),
            image=f.get("image"),
        )

    def view(self) -> dict[str, Any]:
        """The job as ``GET /jobs/{id}`` shows it (never the image bytes)."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    """A stream entry handed to a worker."""

    entry_id: str
    job_id: str


def queue_full(message: str) -> QueueFull:
    return QueueFull(message, headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)})


class JobStore:
    """The queue's operations, each one atomic in Redis.

    Every call has a deadline (``OCR_REDIS_TIMEOUT_S``). Once a call finds Redis unreachable or silent, the
    API's calls (``ensure_group``, ``enqueue``, ``get``) fail at once, and a background probe PINGs Redis
    every ``fail_fast_s`` until it answers: requests arriving while Redis hangs are answered at once
    instead of each waiting out the deadline (and holding a thread, or an upload slot, meanwhile); none
    waits on a Redis already known to be silent. The probe gives up after ``PROBE_FOR_S``; the next call
    then asks Redis itself. Workers pass ``fail_fast_s=0`` (no probe, never fail fast): they back off on
    their own.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        client: redis.Redis | None = None,
        *,
        timeout_s: float | None = None,
        fail_fast_s: float = FAIL_FAST_S,
    ) -> None:
        self.settings = settings
        self.stream = settings.jobs_stream
        self.group = settings.jobs_group
        self.ttl = settings.job_ttl_s
        self.sizes_key = f"{self.stream}:queued-sizes"
        self.bytes_key = f"{self.stream}:queued-bytes"
        timeout = settings.redis_timeout_s if timeout_s is None else timeout_s
        self.redis = client or redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=min(1.0, timeout),
            socket_timeout=timeout,
            health_check_interval=10,
        )
        self.fail_fast_s = fail_fast_s
        self._silent = threading.Event()  # set while Redis is known not to answer (a probe is running)
        self._silence = ""  # why: the failure that started the probe
        self._probe_lock = threading.Lock()
        self._finish = self.redis.register_script(lua.ALLOW_OOM + lua.HELPERS + lua.FINISH)
        self._enqueue = self.redis.register_script(lua.DENY_OOM + lua.HELPERS + lua.ENQUEUE)
        self._start = self.redis.register_script(lua.ALLOW_OOM + lua.HELPERS + lua.START)
        self._retry = self.redis.register_script(lua.ALLOW_OOM + lua.HELPERS + lua.RETRY)
        self._ack = self.redis.register_script(lua.ALLOW_OOM + lua.HELPERS + lua.ACK)

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Fail at once while Redis is known not to answer; a call that finds it so starts the probe."""
        if self._silent.is_set():
            raise redis.ConnectionError(f"Redis does not answer ({self._silence}); not asking again until it does")
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self.fail_fast_s:
                self._silence = f"{type(exc).__name__}: {exc}"
                self._start_probe()
            raise

    def _start_probe(self) -> None:
        with self._probe_lock:
            if self._silent.is_set():
                return
            self._silent.set()
        threading.Thread(target=self._probe, name="redis-probe", daemon=True).start()

    def _probe(self) -> None:
        """PING Redis every ``fail_fast_s`` (each with the call deadline) until it answers, at most for
        ``PROBE_FOR_S``; then let calls through again."""
        give_up = time.monotonic() + PROBE_FOR_S
        try:
            while time.monotonic() < give_up:
                time.sleep(self.fail_fast_s)
                try:
                    self.redis.ping()
                    return
                except redis.RedisError:
                    continue
        finally:
            self._silent.clear()

    @staticmethod
    def job_key(job_id: str) -> str:
        return f"ocr:job:{job_id}"

    @staticmethod
    def idem_key(tenant_id: str, key: str) -> str:
        """Idempotency keys are per tenant: two clients choosing "order-1" get their own jobs."""
        return f"ocr:idem:{tenant_id}:{key}"

    # -- both sides ---------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the consumer group (and stream) if missing; from id 0, so nothing enqueued is skipped."""
        with self._answering():
            try:
                self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.OutOfMemoryError:
                # Redis is full (maxmemory, noeviction) and refuses XGROUP CREATE even for a group that
                # exists; a worker must still start then, since each job it finishes frees memory.
                if not self._group_exists():
                    raise
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _group_exists(self) -> bool:
        try:
            groups: Any = self.redis.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream
            return False
        return any(g["name"] in (self.group, self.group.encode()) for g in groups)

    def get(self, job_id: str, *, tenant_id: str | None = None) -> Job | None:
        """The job; None when unknown or expired, or, given ``tenant_id``, when another tenant submitted it
        (a caller cannot tell another tenant's job from one that does not exist)."""
        if not JOB_ID_RE.match(job_id):
            return None
        with self._answering():
            raw = self.redis.hgetall(self.job_key(job_id))
        if not raw:
            return None
        job = Job.from_hash(job_id, raw)  # type: ignore[arg-type]
        if tenant_id is not None and job.tenant_id != tenant_id:
            return None
        return job

    def queue_counts(self) -> tuple[int | None, int]:
        """(lag, pending) of the consumer group in one round trip; the group is recreated first when it is
        missing (Redis lost its data), so the lag KEDA reads exists again before any worker does."""
        for _ in range(2):
            try:
                groups = self.redis.xinfo_groups(self.stream)
            except redis.ResponseError:  # no stream
                groups = []
            for group in groups:  # type: ignore[union-attr]
                name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
                if name == self.group:
                    lag = group.get("lag")
                    return (None if lag is None else int(lag)), int(group["pending"])
            self.ensure_group()
        return None, 0

    def queued_bytes(self) -> int:
        """The image bytes of the jobs still to be done (what OCR_JOBS_QUEUE_MAX_BYTES bounds)."""
        return int(self.redis.get(self.bytes_key) or 0)  # type: ignore[arg-type]

    def lag(self) -> int | None:
        """Entries not yet delivered to the group (Redis >= 7), the number KEDA's lag trigger reads."""
        for group in self.redis.xinfo_groups(self.stream):  # type: ignore[union-attr]
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == self.group:
                return None if group.get("lag") is None else int(group["lag"])
        return None

    def entries_added(self) -> int:
        """Every entry ever added to the stream (Redis >= 7): grows by one per job queued, even once
        workers have taken it."""
        try:
            info = self.redis.xinfo_stream(self.stream)
        except redis.ResponseError:  # no stream yet
            return 0
        return int(info["entries-added"])  # type: ignore[index]

    def pending(self) -> int:
        return int(self.redis.xpending(self.stream, self.group)["pending"])  # type: ignore[index]

    # -- the API side -------------------------------------------------------------------------------

    def enqueue(
        self, image: bytes, *, request_id: str, tenant_id: str, idempotency_key: str | None = None
    ) -> tuple[str, bool]:
        """Create a queued job; returns (job id, created). A known Idempotency-Key returns its job if the
        image is the same, and raises IdempotencyKeyReused if it is not. QueueFull past either bound, or
        when Redis is out of memory."""
        job_id = uuid.uuid4().hex
        t = now()
        fields: list[Any] = [
            "status", "queued", "attempts", 0, "created_at", t, "updated_at", t,
            "request_id", request_id, "tenant_id", tenant_id, "image", image,
        ]  # fmt: skip
        idem = self.idem_key(tenant_id, idempotency_key) if idempotency_key is not None else ""
        max_bytes = self.settings.jobs_queue_max_bytes
        with self._answering():
            try:
                code, value = self._enqueue(
                    keys=[self.job_key(job_id), self.stream, idem, self.sizes_key, self.bytes_key],
                    args=[
                        job_id, self.ttl, self.settings.jobs_stream_maxlen, self.group, max_bytes, len(image),
                        hashlib.sha256(image).hexdigest(), *fields,
                    ],
                )  # fmt: skip
            except redis.OutOfMemoryError as exc:
                raise queue_full("the job store is out of memory; retry later") from exc
        code = int(code)
        value = value.decode() if isinstance(value, bytes) else str(value)
        if code == -1:
            raise queue_full(f"the job queue holds {self.settings.jobs_stream_maxlen} jobs already; retry later")
        if code == -2:
            raise queue_full(f"the job queue holds {value} of its {max_bytes} bytes of images already; retry later")
        if code == -3:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {idempotency_key!r} was used for job {value} with another image;"
                " a new image needs a new key"
            )
        return value, code == 1

    # -- the worker side ----------------------------------------------------------------------------

    def _deliveries(self, reply: Any) -> list[Delivery]:
        out = []
        for entry_id, fields in reply or []:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            job = fields.get(b"job_id") or fields.get("job_id")
            out.append(Delivery(eid, job.decode() if isinstance(job, bytes) else str(job)))
        return out

    def claim_stale(self, consumer: str) -> list[Delivery]:
        """Take over one entry pending longer than the visibility timeout (its worker died)."""
        idle_ms = int(self.settings.visibility_timeout_s * 1000)
        reply = self.redis.xautoclaim(self.stream, self.group, consumer, idle_ms, "0-0", count=1)
        return self._deliveries(reply[1])  # type: ignore[index]

    def read(self, consumer: str, *, block_ms: int = 1000) -> list[Delivery]:
        reply: Any = self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=1, block=block_ms)
        return [d for _, entries in reply or [] for d in self._deliveries(entries)]

    def own_pending(self, consumer: str) -> list[Delivery]:
        """The oldest entry delivered to ``consumer`` and not acked (XREADGROUP from id 0): one whose reply
        was lost when a call timed out, or one left by an earlier process of the same name."""
        reply: Any = self.redis.xreadgroup(self.group, consumer, {self.stream: "0"}, count=1)
        return [d for _, entries in reply or [] for d in self._deliveries(entries)]

    def touch(self, consumer: str, delivery: Delivery) -> None:
        """Reset the entry's idle time: a live worker's long job is not claimed by another."""
        self.redis.xclaim(self.stream, self.group, consumer, 0, [delivery.entry_id], justid=True)

    def start(self, delivery: Delivery, consumer: str) -> Job | None:
        """Mark the job running and count the attempt; None when the job expired. A job that already
        has an outcome is returned as it is (its entry was delivered again)."""
        key = self.job_key(delivery.job_id)
        if not self._start(keys=[key, self.sizes_key, self.bytes_key], args=[consumer, now(), delivery.job_id]):
            return None
        raw = self.redis.hgetall(key)
        return Job.from_hash(delivery.job_id, raw) if raw else None  # type: ignore[arg-type]

    def _finish_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        args: list[Any] = [job_id, self.ttl]
        for k, v in fields.items():
            args += [k, v]
        return bool(self._finish(keys=[self.job_key(job_id), self.sizes_key, self.bytes_key], args=args))

    def done(self, delivery: Delivery, *, dead_letter: bool = False) -> None:
        """Ack the entry; the stream is trimmed up to the oldest entry still to be done. ``dead_letter``
        lists the job among the failed ones in the same step."""
        self._ack(
            keys=[self.stream, self.sizes_key, self.bytes_key, DEAD_LETTERS],
            args=[self.group, delivery.entry_id, delivery.job_id if dead_letter else "", DEAD_LETTERS_KEPT],
        )

    def succeed(self, delivery: Delivery, result: dict[str, Any]) -> bool:
        t = now()
        stored = self._finish_job(
            delivery.job_id,
            {"status": "succeeded", "result": json.dumps(result), "finished_at": t, "updated_at": t},
        )
        self.done(delivery)
        return stored

    def fail(self, delivery: Delivery, error: str) -> bool:
        t = now()
        stored = self._finish_job(
            delivery.job_id, {"status": "failed", "error": error, "finished_at": t, "updated_at": t}
        )
        self.done(delivery, dead_letter=stored)
        return stored

    def failed_ids(self, limit: int = 100) -> list[str]:
        """The most recent jobs that ended failed, newest first."""
        return [v.decode() for v in self.redis.lrange(DEAD_LETTERS, 0, limit - 1)]  # type: ignore[union-attr]

    def retry(self, delivery: Delivery, consumer: str, error: str) -> RetryResult:
        """Give the job back to the queue at once (ack this entry, add a new one), atomically.

        ``requeued``: done. ``not_owner``: the entry passed to another consumer (nothing changed: the
        job is theirs now). ``ended``: the job already has an outcome; ``expired``: its record is gone;
        in both cases the entry is acked and nothing is requeued.
        """
        code = self._retry(
            keys=[self.job_key(delivery.job_id), self.stream, self.sizes_key, self.bytes_key],
            args=[self.group, delivery.entry_id, consumer, error, now(), delivery.job_id],
        )
        return _RETRY_RESULTS[int(code)]


@dataclass(frozen=True)
class QueueReading:
    lag: int | None
    pending: int
    at: float  # time.monotonic() of the reading


class QueueCollector(Collector):
    """Queue lag and pending entries (what KEDA reads, as it reads it), for Prometheus.

    Both the API and the workers export them: the API always runs, so the lag stays visible (and alertable)
    while the workers are at zero replicas. A scrape never waits on Redis: a background thread, started by
    the first scrape, reads Redis every ``interval_s`` with a ``timeout_s`` deadline (recreating the consumer
    group when Redis lost it), and a scrape shows the last reading. A reading older than ``max_age_s``
    (Redis unreachable or hung) is not shown: the series are absent, never a stale number passed off as
    current; ``ocr_jobs_queue_stats_age_seconds`` says how old the last reading is.
    """

    def __init__(
        self,
        store: Callable[[], JobStore],
        *,
        interval_s: float = 1.0,
        timeout_s: float = 1.0,
        max_age_s: float = 3.0,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self._reading: QueueReading | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._ensure_reader()
        lag = GaugeMetricFamily("ocr_jobs_queue_lag", "Stream entries not yet delivered to the consumer group")
        pending = GaugeMetricFamily("ocr_jobs_pending", "Entries delivered to a worker and not yet acked")
        age = GaugeMetricFamily(
            "ocr_jobs_queue_stats_age_seconds", "Seconds since the queue lag and pending entries were read from Redis"
        )
        reading = self._reading
        if reading is not None:
            elapsed = time.monotonic() - reading.at
            age.add_metric([], round(elapsed, 3))
            if elapsed <= self.max_age_s:
                if reading.lag is not None:
                    lag.add_metric([], reading.lag)
                pending.add_metric([], reading.pending)
        yield lag
        yield pending
        yield age

    def close(self) -> None:
        self._stopping.set()

    def _ensure_reader(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._read_forever, name="queue-metrics", daemon=True)
                self._thread.start()

    def _read_forever(self) -> None:
        reader: JobStore | None = None
        failing = False
        while not self._stopping.is_set():
            try:
                if reader is None:
                    reader = JobStore(self.store().settings, timeout_s=self.timeout_s, fail_fast_s=0)
                lag, pending = reader.queue_counts()
                self._reading = QueueReading(lag, pending, time.monotonic())
                if failing:
                    log.info("queue metrics: Redis answers again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - the reader must outlive any failure; it is logged
                if not failing:
                    log.warning("queue metrics: cannot read the queue from Redis: %s", exc)
                failing = True
            self._stopping.wait(self.interval_s)
