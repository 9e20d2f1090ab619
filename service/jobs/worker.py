"""``python -m service.jobs.worker``: run OCR jobs from the Redis stream with the same model as /predict.

The loop: claim an entry left pending by a dead worker (XAUTOCLAIM after the visibility timeout), else
read a new one (XREADGROUP, blocking 1 s); count the attempt; run the model; store the outcome; then ack.
A failure is retried at once until OCR_MAX_ATTEMPTS, then the job is marked failed with its reason and
leaves the queue. SIGTERM stops reading, finishes the current job and exits 0. A lost Redis connection
is retried with capped exponential backoff; the process does not crash-loop and the job is not lost
(its entry stays pending and is claimed again).

Every Redis call has a deadline (OCR_REDIS_TIMEOUT_S). A call that times out may still run once Redis goes
on (a hung Redis executes what it had buffered): an entry is then delivered to this worker with nobody to
read the reply, or an outcome is stored and never acked. So, at start-up and after every Redis failure, the
worker first takes back the entries still pending under its own name (XREADGROUP from id 0) and resumes
them, instead of leaving them to the visibility timeout. A worker started again under the same name does
the same for what its previous process left.

Every log line about a job carries ``event`` (one of ``EVENTS``, a stable name that log queries and the
acceptance tests count on; the message text is for people and may change), ``job_id``, ``request_id``,
``worker`` and ``attempt`` (the attempt number this worker is on; null when it never started one).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service import allocator
from service.errors import ModelLoadError
from service.images import decode_image
from service.jobs.store import Delivery, Job, JobStore, QueueCollector
from service.logs import log_from_signal
from service.metrics import LATENCY_BUCKETS
from service.models.ocr import OcrModel, build_predict_response
from service.settings import ServiceSettings
from service.startup import EXIT_NO_MODEL, boot, load_model

log = logging.getLogger("service.jobs.worker")
STALLED_AFTER_S = 60.0

# The ``event`` values of job log lines. An attempt that runs (``job_started``) ends in exactly one of
# succeeded, failed, retried, retry_lost, outcome_discarded or expired, unless its worker dies; a job's
# outcome is written once, so across all workers a job has at most one succeeded or failed line.
EVENTS = frozenset(
    {
        "job_started",  # an attempt begins
        "job_succeeded",  # the result is stored: this worker wrote the job's outcome
        "job_failed",  # the job is marked failed (attempts exhausted): this worker wrote the outcome
        "job_retried",  # the attempt failed and the job went back to the queue
        "job_retry_lost",  # the attempt failed after its entry passed to another worker: theirs now
        "job_outcome_discarded",  # the job already had an outcome: this attempt's is dropped
        "job_expired",  # the job's record expired before it ran; its entry is dropped
        "job_claimed",  # taken over from a silent worker after the visibility timeout
        "job_resumed",  # an entry still pending under this worker's own name, taken back after a Redis fault
        "job_already_finished",  # an entry delivered again after its outcome was stored; dropped
        "job_heartbeat_failed",  # the entry's idle time could not be reset (Redis unreachable)
    }
)


class WorkerMetrics:
    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.processed = Counter("ocr_jobs_processed", "Jobs finished successfully by this worker", registry=r)
        self.failed = Counter("ocr_jobs_failed", "Jobs marked failed by this worker", registry=r)
        self.retried = Counter("ocr_jobs_retried", "Failed attempts given back to the queue", registry=r)
        self.claimed = Counter("ocr_jobs_claimed", "Entries taken over from a silent worker", registry=r)
        self.duration = Histogram(
            "ocr_job_duration_seconds", "Time to process one job", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "ocr_job_queue_wait_seconds", "Time from enqueue to a worker starting the job", buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.attempts = Histogram(
            "ocr_job_attempts", "Attempts a job took to finish", buckets=(1, 2, 3, 5, 10), registry=r
        )
        self.busy = Gauge("ocr_worker_busy", "1 while a job is being processed", registry=r)
        self.redis_up = Gauge("ocr_worker_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.queue = QueueCollector(lambda: store)
        r.register(self.queue)


class HealthServer:
    """``/healthz`` (liveness: the loop is alive) and ``/metrics`` on the worker port."""

    def __init__(self, worker: Worker, host: str, port: int) -> None:
        outer = worker

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, status, ctype = generate_latest(outer.metrics.registry), 200, "text/plain; version=0.0.4"
                elif self.path == "/healthz":
                    state = outer.health()
                    body = json.dumps(state).encode()
                    status, ctype = (200 if state["status"] == "ok" else 503), "application/json"
                else:
                    body, status, ctype = b'{"error": "not found"}', 404, "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


class Worker:
    def __init__(self, settings: ServiceSettings, model: OcrModel, store: JobStore | None = None) -> None:
        self.settings = settings
        self.model = model
        # No fail-fast: the loop backs off on its own.
        self.store = store or JobStore(settings, fail_fast_s=0)
        self.name = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = WorkerMetrics(self.store)
        self.stopping = threading.Event()
        self.last_loop = time.monotonic()
        self.redis_ok = False
        self.busy = False
        # Take back entries pending under this name before reading new ones: at start-up, after a fault.
        self.resuming = True
        # XREADGROUP blocks for less than the Redis call deadline, so an idle wait is never a timeout.
        self.block_ms = int(min(1.0, settings.redis_timeout_s / 2) * 1000)

    def health(self) -> dict[str, Any]:
        # A job may legitimately run long (the model cannot be interrupted): only an idle loop that stopped
        # turning is stalled. Between jobs the loop turns at least once a second (XREADGROUP blocks 1 s).
        idle_for = time.monotonic() - self.last_loop
        stalled = not self.busy and idle_for > STALLED_AFTER_S
        return {
            "status": "stalled" if stalled else "ok",
            "worker": self.name,
            "redis": self.redis_ok,
            "busy": self.busy,
        }

    def request_stop(self, sig: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            log_from_signal(log, "signal %s: finishing the current job, then exiting", signal.Signals(sig).name)
        self.stopping.set()

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            self.last_loop = time.monotonic()
            try:
                if not self.redis_ok:
                    self.store.ensure_group()
                deliveries, how = self._next()
                self._set_redis(True)
                backoff = 0.5
                for delivery in deliveries:
                    self.process(delivery, claimed=how == "claimed", resumed=how == "resumed")
            except redis.RedisError as exc:
                self._set_redis(False)
                self.resuming = True
                log.warning("redis unavailable: %s; retrying in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        log.info("worker stopped", extra={"worker": self.name})

    def _next(self) -> tuple[list[Delivery], str]:
        """The next entries to process and how they came: resumed (pending under this worker's own name),
        claimed (from a silent worker) or read (new)."""
        if self.resuming:
            deliveries = self.store.own_pending(self.name)
            if deliveries:
                return deliveries, "resumed"
            self.resuming = False
        deliveries = self.store.claim_stale(self.name)
        if deliveries:
            self.metrics.claimed.inc(len(deliveries))
            return deliveries, "claimed"
        return self.store.read(self.name, block_ms=self.block_ms), "read"

    def _set_redis(self, ok: bool) -> None:
        self.redis_ok = ok
        self.metrics.redis_up.set(1 if ok else 0)

    def _log(self, level: int, event: str, message: str, *args: Any, **fields: Any) -> None:
        """One log line about a job, with its stable ``event`` name."""
        assert event in EVENTS, event
        log.log(level, message, *args, extra={"event": event, "worker": self.name, **fields})

    def process(self, delivery: Delivery, *, claimed: bool = False, resumed: bool = False) -> None:
        job = self.store.start(delivery, self.name)
        ended = job is not None and job.status in ("succeeded", "failed")
        # ``attempt`` is the number start() just counted, the attempt this worker is making.
        fields = {
            "job_id": delivery.job_id,
            "request_id": job.request_id if job else None,
            "attempt": job.attempts if job and not ended else None,
        }
        if claimed:
            self._log(logging.INFO, "job_claimed", "job taken over from a silent worker", **fields)
        if resumed:
            message = "job taken back: its entry was still pending under this worker's name"
            self._log(logging.INFO, "job_resumed", message, **fields)
        if job is None:
            self._log(logging.WARNING, "job_expired", "job expired before it ran; dropping its entry", **fields)
            self.store.done(delivery)
            return
        if ended:
            message = "job delivered again after its outcome was stored; dropping its entry"
            self._log(logging.INFO, "job_already_finished", message, **fields)
            self.store.done(delivery)
            return
        if job.attempts > self.settings.max_attempts:
            # Every allowed attempt was taken and none ended (their workers died): no model run.
            reason = f"gave up after {job.attempts - 1} attempts; last error: {job.error or 'worker lost'}"
            self._fail(delivery, reason, attempts=job.attempts - 1, fields=fields)
            return
        self._log(logging.INFO, "job_started", "job started", **fields)
        self.metrics.queue_wait.observe(max(0.0, (job.started_at or 0) - job.created_at))
        self.metrics.busy.set(1)
        self.busy = True
        done = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(delivery, done, fields), daemon=True)
        heartbeat.start()
        start = time.perf_counter()
        try:
            result = self._run_model(job)
        except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded and retried
            error = f"{type(exc).__name__}: {exc}"
            if job.attempts >= self.settings.max_attempts:
                reason = f"failed after {job.attempts} attempts; last error: {error}"
                self._fail(delivery, reason, attempts=job.attempts, fields=fields)
            else:
                self._retry(delivery, error, fields)
        else:
            elapsed = time.perf_counter() - start
            result["latency_ms"] = round(elapsed * 1000, 2)
            self.metrics.duration.observe(elapsed)
            if self.store.succeed(delivery, result):
                self.metrics.processed.inc()
                self.metrics.attempts.observe(job.attempts)
                self._log(logging.INFO, "job_succeeded", "job succeeded", **fields, latency_ms=result["latency_ms"])
            else:
                message = "job already had an outcome; this result is discarded"
                self._log(logging.WARNING, "job_outcome_discarded", message, **fields)
        finally:
            done.set()
            heartbeat.join(timeout=5)
            self.busy = False
            self.last_loop = time.monotonic()
            self.metrics.busy.set(0)

    def _retry(self, delivery: Delivery, error: str, fields: dict[str, Any]) -> None:
        outcome = self.store.retry(delivery, self.name, error)
        if outcome == "requeued":
            self.metrics.retried.inc()
            self._log(logging.WARNING, "job_retried", "job attempt failed, retrying: %s", error, **fields)
        elif outcome == "not_owner":
            message = "job attempt failed after its entry passed to another worker: %s"
            self._log(logging.WARNING, "job_retry_lost", message, error, **fields)
        elif outcome == "ended":
            message = "job already had an outcome; this attempt's failure is discarded: %s"
            self._log(logging.WARNING, "job_outcome_discarded", message, error, **fields)
        else:
            message = "job expired while it ran; this attempt's failure is discarded: %s"
            self._log(logging.WARNING, "job_expired", message, error, **fields)

    def _fail(self, delivery: Delivery, reason: str, *, attempts: int, fields: dict[str, Any]) -> None:
        """Mark the job failed; only the worker whose outcome was stored reports (and counts) the failure."""
        if self.store.fail(delivery, reason):
            self.metrics.failed.inc()
            self.metrics.attempts.observe(attempts)
            self._log(logging.ERROR, "job_failed", "job failed: %s", reason, **fields)
        else:
            message = "job already had an outcome; this failure is discarded: %s"
            self._log(logging.WARNING, "job_outcome_discarded", message, reason, **fields)

    def _heartbeat(self, delivery: Delivery, done: threading.Event, fields: dict[str, Any]) -> None:
        interval = self.settings.visibility_timeout_s / 3
        while not done.wait(interval):
            try:
                self.store.touch(self.name, delivery)
            except redis.RedisError as exc:
                self._log(
                    logging.WARNING,
                    "job_heartbeat_failed",
                    "heartbeat for %s failed: %s",
                    delivery.job_id,
                    exc,
                    **fields,
                )

    def _run_model(self, job: Job) -> dict[str, Any]:
        if job.image is None:
            raise ValueError("the job has no image")
        image = decode_image(job.image, max_pixels=self.settings.max_pixels)
        result = allocator.trimmed(lambda: self.model.read(image))()
        # The exact shape of a /predict answer; latency_ms is set once the job is done.
        response = build_predict_response(
            result, self.model.info, request_id=job.request_id or job.job_id, latency_ms=0.0
        )
        return response.model_dump()


def main() -> int:
    settings = boot("worker")
    try:
        # A worker runs one job at a time: OCR_MAX_CONCURRENCY is the API's, not the worker's.
        model = load_model(settings, concurrency=1).model
    except ModelLoadError as exc:
        log.critical("cannot start: %s", exc)
        return EXIT_NO_MODEL
    worker = Worker(settings, model)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    health = HealthServer(worker, settings.host, settings.worker_port)
    health.start()
    log.info(
        "worker ready",
        extra={"worker": worker.name, "stream": settings.jobs_stream, "group": settings.jobs_group,
               "port": health.port, "model_version": model.info.version},
    )  # fmt: skip
    try:
        worker.run()
    finally:
        worker.metrics.queue.close()
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
