"""The Grafana dashboard conforms to Grafana's dashboard schema and shows what the platform promises.

The schema is Grafana's own (its CUE kinds), as generated into the ``grafana-foundation-sdk`` package (pinned
in harness.checks.monitoring.GRAFANA_SDK_REQUIREMENT): see :func:`harness.checks.monitoring.dashboard_schema_errors`.
Without the package the schema tests are skipped, unless OCR_REQUIRE_GRAFANA_SDK=1 (CI) makes that an error.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from harness.checks import monitoring

SDK_REQUIRED = os.environ.get("OCR_REQUIRE_GRAFANA_SDK") == "1"


@pytest.fixture
def board() -> dict[str, Any]:
    return monitoring.dashboard()


@pytest.fixture
def schema_errors() -> Callable[[dict[str, Any]], list[str]]:
    if not monitoring.grafana_sdk_available():
        message = f"the dashboard schema comes with {monitoring.GRAFANA_SDK_REQUIREMENT}, which is not installed"
        if SDK_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return monitoring.dashboard_schema_errors


def test_the_dashboard_conforms_to_grafanas_schema(
    board: dict[str, Any], schema_errors: Callable[[dict[str, Any]], list[str]]
) -> None:
    assert schema_errors(board) == []


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in board["panels"] if p["title"] == title]
    return found


BREAKAGES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown panel field", lambda b: b["panels"][0].update(gridpos={}), "gridpos: unknown field"),
    ("unknown field config", lambda b: b["panels"][0]["fieldConfig"]["defaults"].update(unitt="s"), "unknown field"),
    ("unknown query field", lambda b: b["panels"][0]["targets"][0].update(legendFormt="x"), "unknown field"),
    ("width as a string", lambda b: b["panels"][0]["gridPos"].update(w="12"), "is not an integer"),
    ("legend mode not in the enum", lambda b: b["panels"][0]["options"]["legend"].update(displayMode="lists"),
     "is not one of"),
    ("stat colour mode not in the enum", lambda b: _panel(b, "Availability of /predict (SLO 99.5 %)")["options"]
     .update(colorMode="rainbow"), "is not one of"),
    ("unknown panel type", lambda b: b["panels"][0].update(type="timeserie"), "unknown panel type"),
    ("query as a number", lambda b: b["panels"][0]["targets"][0].update(expr=5), "is not a string"),
    ("variable hidden in an unknown way", lambda b: b["templating"]["list"][0].update(hide=7), "is not one of"),
    ("panels as an object", lambda b: b.update(panels={}), "the schema has list"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "breakage", "expected"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_the_schema_check_catches(
    what: str,
    breakage: Callable[[dict[str, Any]], None],
    expected: str,
    board: dict[str, Any],
    schema_errors: Callable[[dict[str, Any]], list[str]],
) -> None:
    broken = copy.deepcopy(board)
    breakage(broken)
    errors = schema_errors(broken)
    assert any(expected in e for e in errors), f"{what}: {errors}"


def exprs(board: dict[str, Any], title_start: str) -> list[str]:
    found = [p for p in monitoring.panels(board) if p["title"].startswith(title_start)]
    assert found, f"no panel titled {title_start}..."
    return [t["expr"] for p in found for t in p.get("targets", [])]


def test_the_dashboard_shows_what_the_platform_promises(board: dict[str, Any]) -> None:
    joined = {start: " ".join(exprs(board, start)) for start in (
        "Request rate", "Latency", "Errors", "503s", "Rate-limited", "SLO", "Availability", "Replicas", "Worker",
        "Cold starts", "Job queue lag", "Job outcomes",
    )}  # fmt: skip
    assert "by (job, route, status)" in joined["Request rate"]
    # Per predictor: the OCR and layout models' latencies differ several-fold and are never one quantile.
    latency = "histogram_quantile({}, sum by (le, job) (rate(ocr_http_request_duration_seconds_bucket"
    assert all(latency.format(q) in joined["Latency"] for q in ("0.5", "0.95", "0.99"))
    assert 'status=~"5.."' in joined["Errors"] and "ocr:predict_errors:ratio_rate5m" in joined["Errors"]
    assert 'status="503"' in joined["503s"] and "ocr_rejections_total" in joined["503s"]
    assert 'response_code="429"' in joined["Rate-limited"] and 'response_code="403"' in joined["Rate-limited"]
    assert all(f"ratio_rate{w}" in joined["SLO"] for w in ("1h", "6h", "1d", "3d"))
    assert "kube_horizontalpodautoscaler_status_desired_replicas" in joined["Replicas"]
    assert 'deployment="ocr-worker"' in joined["Worker"] and "keda-hpa-ocr-worker" in joined["Worker"]
    assert "process_start_time_seconds" in joined["Cold starts"] and "ocr_ready" in joined["Cold starts"]
    assert "ocr_jobs_queue_lag" in joined["Job queue lag"] and "ocr_jobs_pending" in joined["Job queue lag"]
    assert all(f"ocr_jobs_{o}_total" in joined["Job outcomes"] for o in ("processed", "failed", "retried"))


def test_traffic_latency_and_refusals_are_per_predictor(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    predictor = variables["predictor"]
    assert predictor["includeAll"] and predictor["multi"] and predictor["allValue"] == ".+"
    assert predictor["query"]["query"] == 'label_values(ocr_ready{namespace="$namespace"}, job)'
    for start in ("Request rate", "Latency", "503s"):
        for expr in exprs(board, start):
            assert 'job=~"$predictor"' in expr and re.search(r"by \([^)]*\bjob\b", expr), (start, expr)


def test_the_slo_panels_use_the_rules_budget(board: dict[str, Any]) -> None:
    budget = f"{monitoring.ERROR_BUDGET:.3f}"
    assert all(e.endswith(f"/ {budget}") for e in exprs(board, "SLO"))
    assert all(e.startswith("1 - ocr:predict_errors:") for e in exprs(board, "Availability"))
    for name in re.findall(r"ocr:[a-z_:0-9]+", " ".join(exprs(board, ""))):
        assert name in monitoring.recording_rules(), f"the dashboard uses {name}, which no rule records"


def test_every_metric_is_one_the_platform_exports() -> None:
    """harness.checks.monitoring.classify raises on a metric it cannot place (service, workers, KSM, KEDA, Istio)."""
    found = monitoring.expressions()
    assert {e.scope for e in found} == {"local", "cluster"}
    assert all(e.metrics for e in found)


def test_panels_fit_the_grid_without_overlap(board: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    ids: set[int] = set()
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, f"panel {panel['title']} is wider than the grid"
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & area, f"panel {panel['title']} overlaps another"
        cells |= area
        assert panel["id"] not in ids, f"two panels with id {panel['id']}"
        ids.add(panel["id"])
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['title']} repeats a refId"


def test_every_variable_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]}
    for panel in monitoring.panels(board):
        for target in panel.get("targets", []):
            used = {next(g for g in m if g) for m in re.findall(r"\$\{(\w+)\}|\$(\w+)", target["expr"])}
            assert used <= defined | {"__rate_interval", "__interval", "__range"}, (panel["title"], used)
            monitoring.substitute(target["expr"])
