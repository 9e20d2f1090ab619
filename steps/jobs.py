"""Steps of the async job path: enqueue, wait for outcomes, disturb workers, check the queue drains."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.targets import Cluster, Jobs, Target, WorkerKill, log_events, need
from harness.provisioning import samples
from steps.common import eventually

T = TypeVar("T")
FINAL = ("succeeded", "failed")
# Structured worker log events (the `event` field) that mark a job's outcome being stored.
FINISH_EVENTS = ("job_succeeded", "job_failed")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def enqueue(client: httpx.Client, target: Target, data: bytes, **headers: str) -> httpx.Response:
    return client.post(f"{target.service_url()}/jobs", files={"file": ("job.png", data)}, headers=headers)


def _over_drops(call: Callable[[], T], *, attempts: int = 3) -> T:
    """``call`` again after a dropped connection (a port-forward restarting under a burst), up to ``attempts``."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except httpx.TransportError:
            if attempt == attempts:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def enqueue_once(client: httpx.Client, target: Target, data: bytes, key: str) -> httpx.Response:
    """One job, whatever the transport does: a retry carries the same Idempotency-Key, so a job the first try
    did create is answered again (200), not queued twice."""
    return _over_drops(lambda: enqueue(client, target, data, **{"Idempotency-Key": key}))


def job_views(client: httpx.Client, target: Target, job_ids: list[str]) -> list[dict[str, Any]]:
    return [_job_view(client, target, job_id) for job_id in job_ids]


def _job_view(client: httpx.Client, target: Target, job_id: str) -> dict[str, Any]:
    """GET /jobs/{id}: read-only, so safe to send again after a dropped connection."""
    view: dict[str, Any] = _over_drops(lambda: client.get(f"{target.service_url()}/jobs/{job_id}")).json()
    return view


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def job_timings(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """queued -> started -> finished per job, in milliseconds, for the evidence."""
    rows = []
    for v in views:
        created, started, finished = _ts(v.get("created_at")), _ts(v.get("started_at")), _ts(v.get("finished_at"))
        rows.append(
            {
                "job_id": v.get("job_id"),
                "status": v.get("status"),
                "attempts": v.get("attempts"),
                "queued_ms": round((started - created) * 1000, 1) if started and created else None,
                "processing_ms": round((finished - started) * 1000, 1) if finished and started else None,
                "total_ms": round((finished - created) * 1000, 1) if finished and created else None,
            }
        )
    return rows


@given(parsers.parse("{count:d} workers are consuming the job queue"), target_fixture="worker_names")
def workers_running(target: Target, evidence: ScenarioEvidence, count: int) -> list[str]:
    names = need(target, Jobs).ensure_workers(count)
    evidence.record("workers", names)
    assert len(names) >= count, names
    return names


@when(parsers.parse("a client enqueues {count} small jobs with known text"), target_fixture="jobs")
def enqueue_small(client: httpx.Client, target: Target, evidence: ScenarioEvidence, count: str) -> dict[str, str]:
    jobs: dict[str, str] = {}
    run = uuid.uuid4().hex[:12]
    started = time.monotonic()
    for i in range(_number(count)):
        sample = samples.words_image(seed=5000 + i)
        response = enqueue_once(client, target, sample.encode(), f"burst-{run}-{i}")
        assert response.status_code in (200, 202), response.text  # 200: a retry found the job its try made
        assert response.headers["location"] == f"/jobs/{response.json()['job_id']}"
        jobs[response.json()["job_id"]] = sample.text
    evidence.record("enqueued", {"jobs": len(jobs), "seconds": round(time.monotonic() - started, 1)})
    return jobs


@given(parsers.parse("a client has enqueued {count} document page jobs"), target_fixture="jobs")
def enqueue_pages(client: httpx.Client, target: Target, evidence: ScenarioEvidence, count: str) -> dict[str, str]:
    jobs: dict[str, str] = {}
    for i in range(_number(count)):
        sample = samples.document(seed=6000 + i, lines=10)
        response = enqueue(client, target, sample.encode())
        assert response.status_code == 202, response.text
        jobs[response.json()["job_id"]] = sample.text
    evidence.record("enqueued", len(jobs))
    return jobs


@when("a job whose stored image is corrupt is queued", target_fixture="jobs")
def enqueue_poison(target: Target, evidence: ScenarioEvidence) -> dict[str, str]:
    # Queued past the API's validation (the service's admin command): the API would refuse these bytes, a
    # damaged record would not.
    job_id = need(target, Jobs).inject_job(b"\x89PNG damaged record")
    evidence.record("poison_job", job_id)
    return {job_id: ""}


def _running_on(
    client: httpx.Client, target: Target, jobs: dict[str, str], workers: list[str]
) -> tuple[str, str] | None:
    for view in job_views(client, target, list(jobs)):
        if view["status"] == "running" and view.get("result") is None:
            worker = need(target, Jobs).job_worker(view["job_id"])
            if worker in workers:
                return worker, view["job_id"]
    return None


@when(
    parsers.parse("a worker is {how} while it runs a job"),
    target_fixture="disturbed",
)
def disturb_worker(
    client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str], how: str
) -> dict[str, str]:
    graceful = {"killed with SIGKILL": False, "sent SIGTERM": True}.get(how)
    assert graceful is not None, f"say 'killed with SIGKILL' or 'sent SIGTERM', not {how!r}"
    name, job_id = _worker_running_a_job(client, target, evidence, jobs)
    if graceful:
        need(target, Jobs).stop_worker(name)
    else:
        need(target, WorkerKill).kill_worker(name)
    evidence.record("disturbed", {"worker": name, "job_id": job_id, "how": how})
    return {"worker": name, "job_id": job_id}


@when("a worker's pod is deleted with no grace period while it runs a job", target_fixture="disturbed")
def delete_worker_pod(
    client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]
) -> dict[str, str]:
    name, job_id = _worker_running_a_job(client, target, evidence, jobs)
    need(target, Cluster).delete_worker_pod_now(name)
    evidence.record("disturbed", {"worker": name, "job_id": job_id, "how": "pod deleted with no grace period"})
    return {"worker": name, "job_id": job_id}


def _worker_running_a_job(
    client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]
) -> tuple[str, str]:
    workers = need(target, Jobs).workers()
    found = eventually(
        evidence, "a worker running a job", lambda: _running_on(client, target, jobs, workers),
        lambda hit: hit is not None, seconds=60, interval=0.1,
    )  # fmt: skip
    assert found is not None
    return found


def _outcomes(client: httpx.Client, target: Target, job_ids: list[str]) -> dict[str, Any]:
    views = job_views(client, target, job_ids)
    counts: dict[str, int] = {}
    for v in views:
        counts[v.get("status", "missing")] = counts.get(v.get("status", "missing"), 0) + 1
    return {"counts": counts, "lag": need(target, Jobs).queue_lag(), "views": views}


@then(parsers.re(r"^all (?P<count>[\d,]+) jobs succeed within (?P<amount>\d+) (?P<unit>seconds|minutes)$"))
def all_succeed(
    client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str], count: str, amount: str,
    unit: str,
) -> None:  # fmt: skip
    n = _number(count)
    seconds = int(amount) * (60 if unit == "minutes" else 1)
    assert len(jobs) == n, (len(jobs), n)
    ids = list(jobs)

    def summary() -> dict[str, Any]:
        state = _outcomes(client, target, ids)
        return {"counts": state["counts"], "lag": state["lag"]}

    last = eventually(
        evidence, f"{n} jobs succeeded", summary, lambda s: s["counts"].get("succeeded", 0) == n,
        seconds=seconds, interval=1 if n <= 100 else 5, threshold=n,  # a look at 1,000 jobs is 1,000 GETs
    )  # fmt: skip
    views = job_views(client, target, ids)
    evidence.write_json("jobs", job_timings(views))
    evidence.record("final_counts", last["counts"])


@then("each job's result reads its image's text")
def results_match(client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]) -> None:
    wrong = []
    for view in job_views(client, target, list(jobs)):
        result = view["result"]
        assert set(result) == {"request_id", "text", "confidence", "latency_ms", "boxes", "model"}, result
        if result["text"] != jobs[view["job_id"]]:
            wrong.append({"job_id": view["job_id"], "expected": jobs[view["job_id"]], "read": result["text"]})
    evidence.record("misread", wrong)
    assert not wrong, wrong


@then(parsers.parse("the queue lag is {n:d} within {seconds:d} seconds"))
def lag_within(target: Target, evidence: ScenarioEvidence, n: int, seconds: int) -> None:
    lag = eventually(
        evidence,
        f"queue lag {n}",
        need(target, Jobs).queue_lag,
        lambda v: v == n,
        seconds=seconds,
        interval=0.5,
        threshold=n,
    )
    evidence.record("queue_lag", lag)


@then(parsers.parse("the queue holds no job, delivered or not, within {seconds:d} seconds"))
def queue_empty_within(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    # Lag alone reaches 0 once every job was delivered; pending entries are delivered but not yet acknowledged.
    stats = eventually(
        evidence, "no job in the queue", need(target, Jobs).queue_stats,
        lambda s: s.get("lag") == 0 and s.get("pending") == 0, seconds=seconds, interval=1,
    )  # fmt: skip
    evidence.record("queue_stats", stats)


@then("each job ended in its final state exactly once")
def finished_once(target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]) -> None:
    finishes: dict[str, int] = dict.fromkeys(jobs, 0)
    discarded: list[str] = []
    for entry in log_events(target, "worker"):
        if entry.get("job_id") not in finishes:
            continue
        if entry.get("event") in FINISH_EVENTS:
            finishes[entry["job_id"]] += 1
        elif entry.get("event") == "job_outcome_discarded":
            discarded.append(entry["job_id"])
    evidence.record("finishes_per_job", finishes)
    evidence.record("results_discarded", discarded)
    assert all(n == 1 for n in finishes.values()), {k: v for k, v in finishes.items() if v != 1}
    # Two workers finishing the same job would show here even though only one outcome is stored.
    assert not discarded, discarded


@then("no job is left running")
def none_running(client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]) -> None:
    statuses = {v["job_id"]: v["status"] for v in job_views(client, target, list(jobs))}
    evidence.record("final_statuses", statuses)
    assert all(s in FINAL for s in statuses.values()), statuses


@then(parsers.parse("that worker exits with code {code:d} within {seconds:d} seconds"))
def worker_exits(
    target: Target, evidence: ScenarioEvidence, disturbed: dict[str, str], code: int, seconds: int
) -> None:
    exit_code = need(target, Jobs).worker_exit_code(disturbed["worker"], timeout=seconds)
    evidence.record("worker_exit_code", exit_code)
    assert exit_code == code


@then("the job it was running succeeds, finished by that worker")
def interrupted_job_done(client: httpx.Client, target: Target, evidence: ScenarioEvidence, disturbed: dict) -> None:
    view = client.get(f"{target.service_url()}/jobs/{disturbed['job_id']}").json()
    worker = need(target, Jobs).job_worker(disturbed["job_id"])
    evidence.record("interrupted_job", {"status": view["status"], "attempts": view["attempts"], "worker": worker})
    assert view["status"] == "succeeded", view
    assert view["attempts"] == 1, view
    assert worker == disturbed["worker"], (worker, disturbed)


@then(parsers.parse("the job is failed within {seconds:d} seconds after {attempts:d} attempts"))
def job_failed(
    client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str], seconds: int, attempts: int
) -> None:
    (job_id,) = jobs
    view = eventually(
        evidence, "poison job failed", lambda: client.get(f"{target.service_url()}/jobs/{job_id}").json(),
        lambda v: v.get("status") in FINAL, seconds=seconds, interval=0.5,
    )  # fmt: skip
    evidence.record("poison_outcome", view)
    assert view["status"] == "failed", view
    assert view["attempts"] == attempts, view


@then(parsers.parse("the job's error explains why it failed"))
def failure_reason(client: httpx.Client, target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]) -> None:
    (job_id,) = jobs
    view = client.get(f"{target.service_url()}/jobs/{job_id}").json()
    evidence.record("failure_reason", view["error"])
    assert "3 attempts" in view["error"] and "image" in view["error"].lower(), view["error"]


@then("the job is listed among the failed jobs")
def listed_failed(target: Target, evidence: ScenarioEvidence, jobs: dict[str, str]) -> None:
    (job_id,) = jobs
    failed = need(target, Jobs).dead_letters()
    evidence.record("failed_list_head", failed[:5])
    assert job_id in failed, failed[:5]


@when("a client enqueues a file that is not an image", target_fixture="jobs")
def enqueue_bad(client: httpx.Client, target: Target, ctx: dict, evidence: ScenarioEvidence) -> dict[str, str]:
    ctx["added_before"] = need(target, Jobs).entries_added()
    ctx["response"] = enqueue(client, target, samples.not_an_image())
    evidence.record("bad_job", {"status": ctx["response"].status_code, "body": ctx["response"].text})
    return {}


@then("nothing was queued")
def nothing_queued(target: Target, ctx: dict, evidence: ScenarioEvidence) -> None:
    # Entries ever added, not the lag: idle workers would take a wrongly queued entry within milliseconds.
    added = need(target, Jobs).entries_added()
    evidence.record("stream_entries_added", {"before": ctx["added_before"], "after": added})
    assert added == ctx["added_before"], (ctx["added_before"], added)
