"""What the manifests say: pinned images agree with harness.provisioning.versions; alerts and the dashboard
use real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness.checks import monitoring
from harness.provisioning import versions
from harness.provisioning.objects import Obj, containers
from harness.provisioning.paths import MANIFESTS_DIR
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]

# What the service and worker export (service/metrics.py and the worker), plus what Istio, kube-state-metrics
# and KEDA export about them: harness.checks.monitoring.METRICS, by source.
SERVICE_METRICS = {m for m, source in monitoring.METRICS.items() if monitoring.SOURCES[source] == "local"}
PLATFORM_METRICS = {m for m, source in monitoring.METRICS.items() if monitoring.SOURCES[source] == "cluster"}
METRIC = re.compile(r"\b((?:ocr|istio|kube|keda|process)_[a-z0-9_]+)\b")


def images(objects: list[Obj]) -> set[str]:
    return {c.spec["image"] for obj in objects for c in containers(obj)}


def test_pinned_images_are_the_ones_in_versions(rendered: Rendered) -> None:
    assert "0" * 64 not in versions.RATELIMIT_IMAGE
    assert images(rendered("full")) == {"ocr:dev", versions.RATELIMIT_IMAGE, versions.REDIS_IMAGE}


def test_redis_is_7_or_later() -> None:
    major = int(versions.REDIS_IMAGE.rsplit(":", 1)[1].split(".")[0])
    assert major >= 7, "KEDA's lag mode reads the consumer-group lag of XINFO GROUPS, which Redis 7 added"


def rule_expressions(objects: list[Obj]) -> list[str]:
    rule = the(objects, "PrometheusRule", "ocr")
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alerts_cover_errors_latency_and_queue_lag(rendered: Rendered) -> None:
    rule = the(rendered("milestone1"), "PrometheusRule", "ocr")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "ocr_http_requests_total" in alerts["OcrHighErrorRatio"]
    assert "histogram_quantile(0.95" in alerts["OcrHighLatencyP95"]
    assert "ocr_jobs_queue_lag" in alerts["OcrJobsQueueLagHigh"]
    used = {m for expr in rule_expressions(rendered("milestone1")) for m in METRIC.findall(expr)}
    assert used <= SERVICE_METRICS | PLATFORM_METRICS


def dashboard(objects: list[Obj]) -> dict:
    configmap = the(objects, "ConfigMap", "ocr-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(configmap["data"]["ocr.json"])


def test_dashboard_has_the_promised_panels(rendered: Rendered) -> None:
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard(rendered("milestone1"))["panels"]}
    expected = ["Request rate", "Latency p50 / p95 / p99", "Errors", "Replicas", "Job queue lag", "Rate-limited"]
    assert all(any(title.startswith(want) for title in panels) for want in expected), sorted(panels)
    latency = " ".join(panels["Latency p50 / p95 / p99"])
    assert "histogram_quantile(0.95" in latency and "histogram_quantile(0.99" in latency
    assert any('response_code="429"' in e for title, exprs in panels.items() if "429" in title for e in exprs)
    used = {m for exprs in panels.values() for e in exprs for m in METRIC.findall(e)}
    assert used <= SERVICE_METRICS | PLATFORM_METRICS


def test_dashboard_panels_do_not_overlap(rendered: Rendered) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard(rendered("milestone1"))["panels"]:
        box = panel["gridPos"]
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & area, f"panel {panel['title']} overlaps another"
        cells |= area


def test_promtool_accepts_the_rules(rendered: Rendered, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    rule = the(rendered("milestone1"), "PrometheusRule", "ocr")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_file_is_the_one_rendered(rendered: Rendered) -> None:
    committed = json.loads((MANIFESTS_DIR / "components" / "monitoring" / "dashboards" / "ocr.json").read_text())
    assert dashboard(rendered("milestone1")) == committed


def test_a_worker_names_itself_after_its_pod(rendered: Rendered) -> None:
    """The cluster target maps a job's worker (the stream consumer) to the pod that ran it, to stop that pod."""
    worker = the(rendered("milestone3"), "Deployment", "ocr-worker")
    (container,) = [c for c in containers(worker) if c.spec["name"] == "worker"]
    env = {e["name"]: e for e in container.spec["env"]}
    assert env["OCR_WORKER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
