"""Rule isvc-governance: every other InferenceService (components/layout, components/table) gets what the ocr
predictor gets, and each way of leaving it out is caught. Every overlay serves the OCR and layout models
(scale-to-zero in Knative mode); the full overlay the table model too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.checks.manifests import policies
from harness.checks.manifests.overlays import OVERLAYS
from harness.checks.manifests.schemas import CLUSTER_SCOPED_BUILTINS
from harness.provisioning.objects import Finding, Obj
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]
LAYOUT = "InferenceService/ocr-dev/layout"


def run(objects: list[Obj], overlay: str = "full") -> list[Finding]:
    scope = lambda _api, kind: kind not in CLUSTER_SCOPED_BUILTINS  # noqa: E731
    return policies.check(policies.Context(objects, OVERLAYS[overlay], scope), only=["isvc-governance"])


def drop(objects: list[Obj], kind: str, name: str) -> None:
    objects[:] = [o for o in objects if not (o["kind"] == kind and o["metadata"]["name"] == name)]


def test_the_full_overlay_serves_three_models_under_the_same_governance(rendered: Rendered) -> None:
    objects = rendered("full")
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService"} == {"ocr", "layout", "table"}
    for model in ("layout", "table"):
        isvc = the(objects, "InferenceService", model)
        env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
        assert env["OCR_MODEL"] == model
        assert env["OCR_MODEL_VERSION"] == isvc["metadata"]["labels"]["app.kubernetes.io/version"]
    assert run(objects) == []


def test_every_overlay_passes_and_serves_its_models(rendered: Rendered) -> None:
    for overlay in sorted(OVERLAYS):
        objects = rendered(overlay)
        assert run(objects, overlay) == [], overlay
        served = {o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService"}
        assert served == {"ocr", "layout"} | ({"table"} if overlay == "full" else set()), overlay


@pytest.mark.parametrize(
    "kind, name",
    [
        ("VirtualService", "table"),
        ("PodMonitor", "table-predictor"),
        ("AuthorizationPolicy", "table-predictor-allow-ingressgateway"),
    ],
)
def test_the_table_model_left_ungoverned_fails_the_rule(rendered: Rendered, kind: str, name: str) -> None:
    objects = rendered("full")
    drop(objects, kind, name)
    findings = run(objects)
    assert any(f.obj == "InferenceService/ocr-dev/table" for f in findings), [str(f) for f in findings]


def _unroute(objects: list[Obj]) -> None:
    drop(objects, "VirtualService", "layout")


def _unfence(objects: list[Obj]) -> None:
    drop(objects, "AuthorizationPolicy", "layout-predictor-allow-ingressgateway")


def _unmonitor(objects: list[Obj]) -> None:
    drop(objects, "PodMonitor", "layout-predictor")


def _plaintext_scrape(objects: list[Obj]) -> None:
    monitor = the(objects, "PodMonitor", "layout-predictor")
    monitor["spec"]["podMetricsEndpoints"] = [{"portNumber": 8080, "path": "/metrics", "interval": "15s"}]


def _other_gateway(objects: list[Obj]) -> None:
    the(objects, "Gateway", "layout-gateway")["spec"]["selector"] = {"istio": "private-gateway"}


def _host_not_served(objects: list[Obj]) -> None:
    the(objects, "Gateway", "layout-gateway")["spec"]["servers"][0]["hosts"] = ["elsewhere.example.com"]


def _version_twice(objects: list[Obj]) -> None:
    container = the(objects, "InferenceService", "layout")["spec"]["predictor"]["containers"][0]
    next(e for e in container["env"] if e["name"] == "OCR_MODEL_VERSION")["value"] = "v-other"


@pytest.mark.parametrize(
    "breaks, obj, message",
    [
        (_unroute, LAYOUT, "no VirtualService routes to its predictor"),
        (_host_not_served, LAYOUT, "no VirtualService routes to its predictor"),
        (_other_gateway, LAYOUT, "another gateway workload"),
        (_unfence, LAYOUT, "no ALLOW AuthorizationPolicy admits cluster.local/ns/istio-system/sa/istio-ingressgateway"),
        (_unmonitor, LAYOUT, "no PodMonitor scrapes its pods"),
        (_plaintext_scrape, "PodMonitor/ocr-dev/layout-predictor", "otherwise than the other predictors'"),
        (_version_twice, LAYOUT, "OCR_MODEL_VERSION='v-other', not the version label"),
    ],
    ids=[
        "no-route",
        "host-not-served",
        "other-gateway",
        "no-allow-policy",
        "no-podmonitor",
        "plaintext-scrape",
        "version",
    ],
)
def test_a_broken_manifest_fails_the_rule(
    rendered: Rendered, breaks: Callable[[list[Obj]], None], obj: str, message: str
) -> None:
    objects = rendered("full")
    breaks(objects)
    findings = run(objects)
    assert any(f.obj == obj and message in f.message for f in findings), [str(f) for f in findings]
    assert all(f.rule == "isvc-governance" for f in findings)
