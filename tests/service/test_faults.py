"""Faults, with real processes and nothing mocked: a Redis that hangs, and workers killed again and again.

A hung Redis is a real ``redis-server`` sent SIGSTOP: the kernel still accepts connections, nothing is ever
answered, as with a stalled node or a frozen disk; SIGCONT lets it go on with whatever it had buffered.
That is harder than a stopped Redis (connections refused at once): every call waits for its timeout.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import wait
from harness.acceptance.components import Endpoint, redis_url, start_job_redis, start_redis, start_service, start_worker
from harness.provisioning import samples
from service.jobs.store import JobStore
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
                assert response.headers.get("retry-after") == "5", dict(response.headers)
                assert elapsed < REDIS_TIMEOUT_S + 1.5, f"{response.request.method} /jobs took {elapsed:.2f}s"
        elapsed, health = timed(httpx.get, f"{api.url}/healthz", timeout=10)
        assert health.status_code == 200 and elapsed < LIVENESS_S
    wait.until(lambda: post_job(api, samples.text_line("Again").encode()).status_code, lambda s: s == 202,
               timeout=10, what="/jobs to accept jobs again")  # fmt: skip


def test_workers_lose_no_job_to_a_hung_redis(stack: dict[str, Any], worker: Endpoint, store: JobStore) -> None:
    """Redis hangs while a worker drains one-line jobs. The call in flight times out, and what Redis had
    buffered runs when it goes on: an entry delivered to a reader that gave up, an attempt started or an
    outcome stored that was never acked. After SIGCONT every job succeeds and nothing stays pending, well
    before the visibility timeout (60 s) would let another worker claim a lost entry: the worker takes its
    own entries back as soon as Redis answers."""
    samples_by_id = {}
    for seed in range(40):
        sample = samples.words_image(seed)
        job_id, _ = store.enqueue(sample.encode(), request_id=f"hang-{seed}", tenant_id="t")
        samples_by_id[job_id] = sample
    wait.until(store.lag, lambda lag: lag is not None and lag <= 37, timeout=30, interval=0.05,
               what="jobs to flow")  # fmt: skip
    with hung(stack["redis"]):
        time.sleep(HANG_S)
        assert worker.process.alive()
    resumed = time.monotonic()

    def outcome() -> tuple[set[str], int | None, int]:
        statuses = {job.status for job in (store.get(i) for i in samples_by_id) if job is not None}
        return statuses, store.lag(), store.pending()

    wait.until(outcome, lambda o: o == ({"succeeded"}, 0, 0), timeout=20,
               what="every job to succeed and nothing to stay pending")  # fmt: skip
    recovered_s = time.monotonic() - resumed
    for job_id, sample in samples_by_id.items():
        job = store.get(job_id)
        assert job is not None and job.result is not None and job.result["text"] == sample.text
    print(f"\nall jobs done and acked {recovered_s:.1f}s after Redis came back")


def enqueue_slowly(api: Endpoint, jobs: list[Any], ids: list[str], every_s: float = 0.3) -> None:
    """Queue each sample as a job, one every ``every_s``, appending each job's id to ``ids``."""
    for sample in jobs:
        response = post_job(api, sample.encode())
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
        time.sleep(every_s)


def job_states(api: Endpoint, ids: list[str]) -> dict[str, int]:
    """How many of the jobs are in each state, as GET /jobs/{id} says."""
    seen: dict[str, int] = {}
    for job_id in ids:
        state = httpx.get(f"{api.url}/jobs/{job_id}", timeout=10).json()["status"]
        seen[state] = seen.get(state, 0) + 1
    return seen


def test_a_storm_of_worker_kills_loses_no_job(stack: dict[str, Any], store: JobStore) -> None:
    """Two workers; every 2 s one of them is SIGKILLed, aimed at a job in progress, and restarted, while 30
    one-line jobs (and 6 short pages, so that kills land mid-job) are queued. Worker "a" comes back under its
    own name (a process restarted in place), worker "b" under a new one each time (a replaced pod, whose
    entry another worker claims after the visibility timeout)."""
    api, root = stack["api"], stack["root"]
    env = {**stack["env"], "OCR_REQUEST_TIMEOUT_S": "2", "OCR_VISIBILITY_TIMEOUT_S": "5"}
    jobs = []
    for seed in range(30):
        jobs.append(samples.words_image(seed))
        if seed % 5 == 4:
            jobs.append(samples.document(seed, lines=4))
    started = time.monotonic()
    ids: list[str] = []
    kills: list[tuple[str, bool]] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        starting = {slot: pool.submit(start_worker, root, name=f"storm-{slot}", env=env) for slot in "ab"}
        workers = {slot: future.result() for slot, future in starting.items()}
        every: list[Endpoint] = list(workers.values())

        enqueuer = pool.submit(enqueue_slowly, api, jobs, ids)
        restarting: dict[str, Future[Endpoint]] = {}
        try:
            while not (enqueuer.done() and len(kills) >= 6) and time.monotonic() - started < 60:
                for slot in [slot for slot, future in restarting.items() if future.done()]:
                    workers[slot] = restarting.pop(slot).result()
                    every.append(workers[slot])
                ready = [slot for slot in "ab" if slot not in restarting]
                if not ready:
                    time.sleep(0.2)
                    continue
                slot = ready[len(kills) % len(ready)]
                victim = workers[slot]
                busy = aim(victim, within=1.5)
                victim.process.signal(signal.SIGKILL)
                victim.process.wait_exit(10)
                kills.append((victim.process.name, busy))
                name = "storm-a" if slot == "a" else f"storm-b{len(kills)}"
                restarting[slot] = pool.submit(start_worker, root, name=name, env=env)
                time.sleep(2.0)
            enqueuer.result()
            for slot, future in restarting.items():
                workers[slot] = future.result()
                every.append(workers[slot])
            wait.until(lambda: job_states(api, ids), lambda s: set(s) <= {"succeeded", "failed"}, timeout=60,
                       what="every job to end")  # fmt: skip
            wait.until(lambda: (store.lag(), store.pending()), lambda v: v == (0, 0), timeout=15,
                       what="nothing left queued or pending")  # fmt: skip
        finally:
            for endpoint in every:
                endpoint.process.stop()
    assert len(ids) == len(jobs) == len(set(ids))
    attempts: dict[int, int] = {}
    for job_id, sample in zip(ids, jobs, strict=True):
        view = httpx.get(f"{api.url}/jobs/{job_id}", timeout=10).json()
        attempts[view["attempts"]] = attempts.get(view["attempts"], 0) + 1
        if view["status"] == "succeeded":
            assert view["result"]["text"] == sample.text
        else:
            assert view["status"] == "failed" and "attempts" in (view["error"] or ""), view
    # A job's outcome is written once: at most one succeeded-or-failed line per job across every worker's log.
    outcomes: dict[str, int] = {}
    for path in sorted(Path(root).glob("storm-*.log")):
        for line in path.read_text().splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") in ("job_succeeded", "job_failed"):
                outcomes[event["job_id"]] = outcomes.get(event["job_id"], 0) + 1
    assert all(count == 1 for count in outcomes.values()), outcomes
    busy_kills = sum(busy for _, busy in kills)
    print(
        f"\n{len(kills)} kills ({busy_kills} during a job), attempts {dict(sorted(attempts.items()))},"
        f" {time.monotonic() - started:.0f}s"
    )


def aim(worker: Endpoint, *, within: float) -> bool:
    """Wait (up to ``within`` seconds) for the worker to be running a job; whether it is."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{worker.url}/healthz", timeout=0.5).json().get("busy"):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.01)
    return False


def test_the_job_redis_survives_a_kill_with_no_queued_job_lost(tmp_path: Path) -> None:
    """The local target's job Redis (start_job_redis, configured as the cluster's) is SIGKILLed with 20 jobs
    queued and no worker; started again on its folder, it still holds all 20, and a worker then does them.
    Without persistence the same kill lost 20 of 20."""
    redis_ep = start_job_redis(tmp_path, tmp_path / "redis", password="job-redis-secret")
    env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S),
           "OCR_INTRA_OP_THREADS": "1"}  # fmt: skip
    api = start_service(tmp_path, name="restart-api", env=env)
    restarted: Endpoint | None = None
    worker_ep: Endpoint | None = None
    try:
        texts = [f"Kept {i}" for i in range(20)]
        ids = []
        for text in texts:
            answer = post_job(api, samples.text_line(text).encode())
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["job_id"])
        time.sleep(1.5)  # appendfsync everysec: what was acknowledged over a second ago is on disk
        redis_ep.process.signal(signal.SIGKILL)
        assert redis_ep.process.wait_exit(10) == -signal.SIGKILL
        restarted = start_job_redis(tmp_path, tmp_path / "redis", password="job-redis-secret", port=redis_ep.port,
                                    name="redis-restarted")  # fmt: skip
        views = [httpx.get(f"{api.url}/jobs/{job_id}", timeout=10) for job_id in ids]
        assert [v.status_code for v in views] == [200] * 20, [v.text for v in views if v.status_code != 200][:3]
        assert {v.json()["status"] for v in views} == {"queued"}
        worker_ep = start_worker(tmp_path, name="restart-worker", env=env)
        done = wait.until(
            lambda: [httpx.get(f"{api.url}/jobs/{job_id}", timeout=10).json() for job_id in ids],
            lambda seen: all(v["status"] == "succeeded" for v in seen),
            timeout=120,
            interval=1,
            what="the 20 jobs queued before the kill done after the restart",
        ).last
        assert done is not None
        # Each job read its own image (spaces aside: OCR may drop the one in "Kept 7").
        assert [v["result"]["text"].replace(" ", "") for v in done] == [t.replace(" ", "") for t in texts]
    finally:
        for endpoint in (worker_ep, api, restarted, redis_ep):
            if endpoint is not None:
                endpoint.process.stop()
