"""Generic PromQL steps: any feature can assert on any expression the target's Prometheus answers."""

from __future__ import annotations

import time

from pytest_bdd import given, parsers, then

from harness.evidence import ScenarioEvidence, slug
from harness.prom import Prometheus, PromQueryError, compare
from harness.targets import Target
from steps.common import eventually

COMPARISONS = "above|below|at least|at most|equal to"


def record_range(evidence: ScenarioEvidence, prom: Prometheus, expr: str, threshold: float) -> None:
    """The expression over the scenario so far (a line for the report, not one number)."""
    end = time.time()
    start = min(evidence.started_at, end - 60)
    try:
        series = prom.range(expr, start=start, end=end, step=max((end - start) / 200, 1.0))
    except PromQueryError as exc:
        evidence.record("promql_range_error", str(exc))
        return
    evidence.write_json(
        f"promql-range-{slug(expr, 60)}", {"expr": expr, "threshold": threshold, "start": start, "series": series}
    )


@given(parsers.re(r"^Prometheus scrapes the OCR (?P<component>service|workers)$"))
def prometheus_scrapes(target: Target, evidence: ScenarioEvidence, component: str) -> None:
    # The job label differs between targets (a PodMonitor's is "<namespace>/<name>"): the target names it.
    job = target.scrape_job({"service": "service", "workers": "worker"}[component])
    prom = target.prometheus()
    health = eventually(
        evidence, f"scrape job {job} up", prom.targets_up, lambda t: t.get(job) == "up", seconds=120, interval=2
    )
    evidence.record("scrape_targets", {"job": job, "health": health})


@then(
    parsers.re(
        rf'the PromQL "(?P<expr>.+)" is (?P<op>{COMPARISONS}) (?P<threshold>-?[\d.]+) within (?P<seconds>\d+) seconds'
    )
)
def promql_within(target: Target, evidence: ScenarioEvidence, expr: str, op: str, threshold: str, seconds: str) -> None:
    prom = target.prometheus()
    limit = float(threshold)
    value = eventually(
        evidence,
        f"promql {expr} {op} {threshold}",
        lambda: prom.value(expr),
        lambda v: compare(v, op, limit),
        seconds=float(seconds),
        interval=1.0,
        threshold=limit,
    )
    evidence.record("promql", {"expr": expr, "op": op, "threshold": limit, "value": value})
    record_range(evidence, prom, expr, limit)


@then(
    parsers.re(
        rf'the PromQL "(?P<expr>.+)" stays (?P<op>{COMPARISONS}) (?P<threshold>-?[\d.]+) for (?P<seconds>\d+) seconds'
    )
)
def promql_for(target: Target, evidence: ScenarioEvidence, expr: str, op: str, threshold: str, seconds: str) -> None:
    from steps.common import consistently

    prom = target.prometheus()
    limit = float(threshold)
    consistently(
        evidence,
        f"promql {expr} stays {op} {threshold}",
        lambda: prom.value(expr),
        lambda v: compare(v, op, limit),
        seconds=float(seconds),
        interval=1.0,
        threshold=limit,
    )
    evidence.record("promql_held", {"expr": expr, "op": op, "threshold": limit, "seconds": float(seconds)})
    record_range(evidence, prom, expr, limit)
