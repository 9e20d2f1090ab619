"""Generic PromQL steps: any feature can assert on any expression the target's Prometheus answers."""

from __future__ import annotations

import re
import time

from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence, slug
from harness.acceptance.load import LocustStats
from harness.acceptance.prom import Prometheus, PromQueryError, compare
from harness.acceptance.targets import Target
from steps.common import consistently, eventually

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


# Named measures: what a feature says, and the PromQL behind it (the feature text names the measure only).
PREDICT_COUNT = 'sum(ocr_http_requests_total{route="/predict"})'
MEASURES = {
    "the p95 latency of /predict in seconds": (
        'histogram_quantile(0.95, sum by (le) (rate(ocr_http_request_duration_seconds_bucket{route="/predict"}[1m])))'
    ),
    "the platform's recorded request rate": "sum(ocr:http_requests:rate5m)",
    "the number of services reporting the pp-ocr model": 'count(ocr_model_info{name="pp-ocr"})',
    "the readiness of the OCR service": "max(ocr_ready)",
}


def measure(name: str) -> str:
    assert name in MEASURES, f"no measure {name!r}; the measures are {sorted(MEASURES)}"
    return MEASURES[name]


@given("Prometheus has counted every /predict request so far", target_fixture="predict_count_before")
def counted_so_far(target: Target, evidence: ScenarioEvidence) -> float:
    # Settled: the same count in reads five seconds apart (every scrape interval the platform uses is shorter).
    prom = target.prometheus()
    reads: list[float] = []

    def read() -> list[float]:
        reads.append(prom.value(PREDICT_COUNT) or 0.0)
        return reads[-2:]

    last = eventually(
        evidence, "the /predict count settled in Prometheus", read,
        lambda two: len(two) == 2 and two[0] == two[1], seconds=90, interval=5,
    )  # fmt: skip
    evidence.record("predict_count_before", last[-1])
    return last[-1]


@then(
    parsers.parse(
        "Prometheus counts as many /predict requests as the client sent, within {percent:d}%, "
        "within {seconds:d} seconds"
    )
)
def counted_as_sent(
    target: Target, evidence: ScenarioEvidence, load_stats: LocustStats, predict_count_before: float, percent: int,
    seconds: int,
) -> None:  # fmt: skip
    sent = load_stats.requests
    assert sent > 0, "the client sent nothing"
    low, high = sent * (1 - percent / 100), sent * (1 + percent / 100)
    prom = target.prometheus()
    counted = eventually(
        evidence, f"Prometheus counts {sent} requests (+-{percent}%)",
        lambda: (prom.value(PREDICT_COUNT) or 0.0) - predict_count_before,
        lambda n: low <= n <= high, seconds=seconds, interval=1.0,
    )  # fmt: skip
    evidence.record("predict_counted", {"sent": sent, "counted": counted, "tolerance_percent": percent})


@then(
    parsers.parse(
        "the p95 latency of /predict in Prometheus is above 0 and at most {factor:d} times the client's own p95, "
        "within {seconds:d} seconds"
    )
)
def p95_against_users(
    target: Target, evidence: ScenarioEvidence, load_stats: LocustStats, factor: int, seconds: int
) -> None:
    # The service times its own work, which the users' latency includes: its p95 cannot be far above theirs
    # (a histogram interpolates inside a bucket, hence the factor), and traffic shows as more than 0.
    users_p95_s = load_stats.p95_ms / 1000
    prom = target.prometheus()
    expr = measure("the p95 latency of /predict in seconds")
    value = eventually(
        evidence, f"p95 in (0, {factor} x {users_p95_s:.3f} s]", lambda: prom.value(expr),
        lambda v: v is not None and 0 < v <= factor * users_p95_s, seconds=seconds, interval=1.0,
    )  # fmt: skip
    evidence.record("p95_latency_s", {"prometheus": value, "users": users_p95_s, "factor": factor})


MEASURE_NAMES = "|".join(re.escape(name) for name in MEASURES)


@then(
    parsers.re(
        rf"^(?P<name>{MEASURE_NAMES}) is (?P<op>{COMPARISONS}) (?P<threshold>-?[\d.]+) within (?P<seconds>\d+) seconds$"
    )
)
def measure_within(
    target: Target, evidence: ScenarioEvidence, name: str, op: str, threshold: str, seconds: str
) -> None:
    promql_within(target, evidence, measure(name), op, threshold, seconds)


@when(parsers.parse("Prometheus has scraped the OCR service for {seconds:d} seconds"))
def scraped_for(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    job = target.scrape_job("service")
    time.sleep(seconds)  # the scenario's own wait, said in its text: several scrapes of every target
    evidence.record("scrape_targets_after_wait", {"job": job, "health": target.prometheus().targets_up()})
