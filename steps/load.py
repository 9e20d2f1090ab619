"""Load steps: locust users for sustained load, and the outcome of a load run."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from harness.evidence import ScenarioEvidence
from harness.load import LocustRun, LocustStats
from harness.targets import Target


@when(
    parsers.parse("{users:d} users send {kind} images to /predict for {seconds:d} seconds"),
    target_fixture="load_stats",
)
def users_send(
    target: Target, evidence: ScenarioEvidence, load_runs: list[LocustRun], users: int, kind: str, seconds: int
) -> LocustStats:
    stats = users_start(target, evidence, load_runs, users, kind, seconds).finish()
    evidence.record("load", vars(stats))
    return stats


@when(
    parsers.parse("{users:d} users start sending {kind} images to /predict for {seconds:d} seconds"),
    target_fixture="load_run",
)
def users_start(
    target: Target, evidence: ScenarioEvidence, load_runs: list[LocustRun], users: int, kind: str, seconds: int
) -> LocustRun:
    image = {"small": "small", "page": "page", "document page": "page"}.get(kind)
    assert image is not None, f"unknown image kind {kind!r}: say small or document page"
    evidence.record("load_started", {"users": users, "seconds": seconds, "image": image})
    run = LocustRun(
        target.service_url(), users=users, seconds=seconds, out_dir=evidence.path / "load", env={"LOAD_IMAGE": image}
    )
    load_runs.append(run)
    return run


@then("the load ends", target_fixture="load_stats")
def load_ends(load_run: LocustRun, evidence: ScenarioEvidence) -> LocustStats:
    stats = load_run.finish()
    evidence.record("load", vars(stats))
    return stats


@then(parsers.parse("at least {n:d} requests were answered"))
def answered(load_stats: LocustStats, evidence: ScenarioEvidence, n: int) -> None:
    evidence.record("requests_answered", load_stats.requests)
    assert load_stats.requests >= n, load_stats


@then(parsers.parse("the error ratio of /predict stays below {percent:g}%"))
def error_ratio_below(load_stats: LocustStats, evidence: ScenarioEvidence, percent: float) -> None:
    evidence.record("error_ratio", load_stats.error_ratio)
    assert load_stats.requests > 0, "no request was sent"
    assert load_stats.error_ratio * 100 < percent, load_stats
