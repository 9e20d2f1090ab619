"""Every PromQL expression of the dashboard and the rules parses, and every ``local`` one returns data here.

(a) Syntax: each expression (the dashboard's as Grafana sends them, variables substituted; an alert's also in
its ``bool`` form) goes into a recording rule of its own and ``promtool check rules`` reads it.

(b) Data: a real service and worker, with Redis, scraped every second by a real Prometheus that loads the
rules, get a little traffic; then every ``local`` expression (its metrics come from the service or the
workers) must return a number (a series whose value is not NaN) through Prometheus' HTTP API within a
deadline: instant queries until it does, then a range query over the run. An alert's expression returns
nothing while the alert is quiet, so its ``bool`` form is what must return data (a sample, 0 or 1, for each
series it watches).
``cluster`` expressions (kube-state-metrics, KEDA, Istio) are only parsed here.

The list, with each expression's local result, is written to ``expressions.json`` under pytest's temporary
directory, and a summary is printed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from typing import Any

import httpx
import pytest

from harness.checks import monitoring
from tests.monitoring.conftest import LocalStack, send_traffic

EXPRESSIONS = monitoring.expressions()
DATA_DEADLINE_S = 45.0

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)"
)


@needs_promtool
@pytest.mark.parametrize("expression", EXPRESSIONS, ids=[f"{e.source}:{e.name}" for e in EXPRESSIONS])
def test_expression_parses(expression: monitoring.Expression) -> None:
    for query in {expression.query, expression.probe}:
        result = monitoring.promtool_check_expression(query)
        assert result.ok, f"{expression.name}: {query}\n{result.output}"


def instant(url: str, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"{query}: {body.get('errorType')}: {body.get('error')}")
    return list(body["data"]["result"])


def range_points(url: str, query: str, start: float, end: float) -> int:
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    body = httpx.get(f"{url}/api/v1/query_range", params=params, timeout=10).json()
    if body.get("status") != "success":
        raise AssertionError(f"{query}: {body.get('errorType')}: {body.get('error')}")
    return sum(len(series["values"]) for series in body["data"]["result"])


def numbers(result: list[dict[str, Any]]) -> list[float]:
    """The values of an instant query's series that are numbers (histogram_quantile of nothing is NaN)."""
    return [v for v in (float(s["value"][1]) for s in result) if not math.isnan(v)]


@needs_promtool
def test_local_expressions_return_data(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.time()
    local_stack.traffic = send_traffic(local_stack.service.url)
    traffic_done = time.time()
    url = local_stack.prometheus_url

    results: dict[str, dict[str, Any]] = {}
    local = [e for e in EXPRESSIONS if e.scope == "local"]
    pending = {e.name: e for e in local}
    deadline = time.monotonic() + DATA_DEADLINE_S
    while pending and time.monotonic() < deadline:
        for name, expression in list(pending.items()):
            result = instant(url, expression.probe)
            if values := numbers(result):
                results[name] = {
                    "status": "data",
                    "seconds_after_traffic": round(time.time() - traffic_done, 1),
                    "series": len(result),
                    "values": values[:8],
                }
                del pending[name]
        time.sleep(0.5)
    end = time.time()
    for name in pending:
        results[name] = {"status": "no data", "seconds_after_traffic": round(end - traffic_done, 1), "series": 0}
    for expression in local:
        if results[expression.name]["status"] == "data":
            results[expression.name]["range_points"] = range_points(url, expression.probe, started, end)
        if expression.kind == "alert":  # recorded, not asserted: the burst of 503s can meet a burn-rate condition
            results[expression.name]["condition_met_now"] = bool(instant(url, expression.query))

    record = []
    for expression in EXPRESSIONS:
        syntax = monitoring.promtool_check_expression(expression.query)
        entry = {**expression.as_dict(), "promtool": "ok" if syntax.ok else syntax.output}
        entry["local"] = results.get(expression.name, {"status": "not run: needs the cluster"})
        record.append(entry)
    path = tmp_path_factory.mktemp("monitoring") / "expressions.json"
    path.write_text(json.dumps({"traffic": local_stack.traffic, "expressions": record}, indent=2) + "\n")

    with_data = [e for e in local if results[e.name]["status"] == "data"]
    slowest = max((results[e.name]["seconds_after_traffic"] for e in with_data), default=0.0)
    summary = (
        f"\nmonitoring expressions: {len(EXPRESSIONS)} ({sum(e.source == 'dashboard' for e in EXPRESSIONS)} dashboard, "
        f"{sum(e.source == 'rules' for e in EXPRESSIONS)} rules); "
        f"{len(local)} local, {len(EXPRESSIONS) - len(local)} cluster; "
        f"promtool ok: {sum(r['promtool'] == 'ok' for r in record)}/{len(record)}; "
        f"local with data: {len(with_data)}/{len(local)} (the last {slowest:.1f} s after the traffic); "
        f"traffic {local_stack.traffic}\n  record: {path}\n"
    )
    with capsys.disabled():
        print(summary)
        for name in pending:
            print(f"  no data: {name}: {pending[name].probe}")
    assert all(r["promtool"] == "ok" for r in record)
    assert not pending, f"local expressions without data after {DATA_DEADLINE_S:.0f} s: {sorted(pending)}"
