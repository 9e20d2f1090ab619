"""Load steps: locust users for sustained load, and the outcome of a load run."""

from __future__ import annotations

import httpx
from pytest_bdd import parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.load import LocustRun, LocustStats, ensure_loopback, paced
from harness.acceptance.targets import Cluster, Target, need
from harness.provisioning import samples


@when(
    parsers.parse("{users:d} users start sending {kind} images to /predict for {seconds:d} seconds"),
    target_fixture="load_run",
)
def users_start(
    target: Target, evidence: ScenarioEvidence, load_runs: list[LocustRun], users: int, kind: str, seconds: int
) -> LocustRun:
    # Sustained load that must reach every replica the autoscaler adds: the target's balancing way in.
    url, headers = need(target, Cluster).load_endpoint()
    return _start(url, headers, evidence, load_runs, users, kind, seconds)


def _start(
    url: str, headers: dict[str, str], evidence: ScenarioEvidence, load_runs: list[LocustRun], users: int, kind: str,
    seconds: int,
) -> LocustRun:  # fmt: skip
    image = {"small": "small", "page": "page", "document page": "page"}.get(kind)
    assert image is not None, f"unknown image kind {kind!r}: say small or document page"
    evidence.record("load_started", {"users": users, "seconds": seconds, "image": image,
                                     "through": url, "headers": sorted(headers)})  # fmt: skip
    env = {"LOAD_IMAGE": image}
    unknown = set(headers) - {"x-api-key", "host"}
    assert not unknown, f"the load user sends no header {sorted(unknown)}"
    if "x-api-key" in headers:
        env["LOAD_API_KEY"] = headers["x-api-key"]  # to the child's environment: never on a command line
    if "host" in headers:
        env["LOAD_HOST_HEADER"] = headers["host"]
    run = LocustRun(url, users=users, seconds=seconds, out_dir=evidence.path / "load", env=env)
    load_runs.append(run)
    return run


@then(parsers.parse("the error ratio of /predict stays below {percent:g}% until the load ends"))
def error_ratio_until_the_end(load_run: LocustRun, evidence: ScenarioEvidence, percent: float) -> None:
    stats = load_run.finish()
    evidence.record("load", vars(stats))
    error_ratio_below(stats, evidence, percent)


@then(parsers.parse("at least {n:d} requests were answered"))
def answered(load_stats: LocustStats, evidence: ScenarioEvidence, n: int) -> None:
    evidence.record("requests_answered", load_stats.requests)
    assert load_stats.requests >= n, load_stats


@then(parsers.parse("the error ratio of /predict stays below {percent:g}%"))
def error_ratio_below(load_stats: LocustStats, evidence: ScenarioEvidence, percent: float) -> None:
    evidence.record("error_ratio", load_stats.error_ratio)
    assert load_stats.requests > 0, "no request was sent"
    assert load_stats.error_ratio * 100 < percent, load_stats


@when(
    parsers.parse("a client sends {rate:d} small images per second to /predict for {seconds:d} seconds"),
    target_fixture="load_stats",
)
def client_paced(target: Target, evidence: ScenarioEvidence, rate: int, seconds: int) -> LocustStats:
    # An exact number of requests on a schedule, each answer kept: what the service's metrics must then count.
    url = target.service_url()
    ensure_loopback(url)
    image = samples.words_image(seed=42).encode()
    with httpx.Client(timeout=30, headers=target.service_headers()) as client:

        def send() -> tuple[int, str]:
            return client.post(f"{url}/predict", files={"file": ("load.png", image)}).status_code, "service"

        result = paced(send, rate=rate, seconds=seconds)
    latencies = sorted(a.seconds * 1000 for a in result.answers)
    stats = LocustStats(
        requests=len(result.answers),
        failures=sum(1 for a in result.answers if a.status != 200),
        median_ms=latencies[len(latencies) // 2],
        p95_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))],
        rps=rate,
        csv_prefix=evidence.path / "requests",
    )
    evidence.record("load", {**vars(stats), "csv_prefix": None, "statuses": result.statuses()})
    evidence.write_json("requests", [[a.at, a.status, a.seconds] for a in result.answers])
    return stats
