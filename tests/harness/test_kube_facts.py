"""What the Kubernetes targets read from API objects, on fixtures that validate strictly against the
Kubernetes 1.35 schema or the pinned CRDs: a fixture with a misspelt field fails here, so a wrong field path
in :mod:`harness.provisioning.kube.facts` cannot hide behind a fixture that matches it."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from harness.acceptance.targets.kube import probe_manifests
from harness.checks.manifests.schemas import SchemaCatalog
from harness.provisioning.kube import facts
from tests.manifests.helpers import CRD_DIR, CRD_SKIP_REASON

FIXTURES = Path(__file__).parent / "fixtures" / "kube"
SCHEMA_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "nodemetrics.json")

# metrics.k8s.io is an aggregated API with no OpenAPI in kubernetes-validate: its NodeMetrics type
# (k8s.io/metrics pkg/apis/metrics/v1beta1/types.go) written out as a strict schema.
NODE_METRICS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "timestamp", "window", "usage"],
    "properties": {
        "apiVersion": {"const": "metrics.k8s.io/v1beta1"},
        "kind": {"const": "NodeMetrics"},
        "metadata": {"type": "object"},
        "timestamp": {"type": "string"},
        "window": {"type": "string"},
        "usage": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}},
        },
    },
}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    if CRD_SKIP_REASON is not None:
        pytest.skip(CRD_SKIP_REASON)
    return SchemaCatalog(CRD_DIR)


@pytest.mark.parametrize("name", SCHEMA_FIXTURES)
def test_fixture_validates_strictly(catalog: SchemaCatalog, name: str) -> None:
    assert catalog.validate(load(name)) == []


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("deployment-predictor.json", ("status", "readyReplica")),
        ("hpa-predictor.json", ("status", "desiredReplica")),
        ("scaledobject-worker.json", ("status", "hpa")),
        # The InferenceService's status keeps unknown fields at its top; its components' entries are strict.
        ("inferenceservice-ready.json", ("status", "components", "predictor", "urll")),
        ("pod-worker-terminated.json", ("status", "containerStatus")),
    ],
)
def test_a_misspelt_field_fails_the_schema(catalog: SchemaCatalog, name: str, path: tuple[str, ...]) -> None:
    broken = copy.deepcopy(load(name))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "x"
    findings = catalog.validate(broken)
    assert any(path[-1] in str(f) for f in findings), findings


def test_node_metrics_fixture_matches_the_upstream_type() -> None:
    validator = Draft202012Validator(NODE_METRICS_SCHEMA)
    assert list(validator.iter_errors(load("nodemetrics.json"))) == []
    broken = {**load("nodemetrics.json"), "usages": {}}
    assert list(validator.iter_errors(broken))


def test_deployment_replicas_count_ready_only_once_the_spec_is_observed() -> None:
    assert facts.deployment_replicas(load("deployment-predictor.json")) == {
        "desired": 3,
        "current": 3,
        "ready": 2,
        "updated": 3,
    }
    # The controller has not seen generation 7 yet: its ready count is not news.
    assert facts.deployment_replicas(load("deployment-worker-stale.json"))["ready"] == -1


def test_hpa_summary_reads_bounds_replicas_and_cpu() -> None:
    assert facts.hpa_summary(load("hpa-predictor.json")) == {
        "min": 1,
        "max": 10,
        "current": 3,
        "desired": 5,
        "cpu_utilization": 143,
        "cpu_target": 65,
        "able_to_scale": True,
        "scaling_active": True,
    }


def test_scaledobject_summary_reads_conditions_and_pause() -> None:
    assert facts.scaledobject_summary(load("scaledobject-worker.json")) == {
        "min": 0,
        "max": 10,
        "ready": True,
        "active": False,
        "paused_replicas": "2",
        "hpa": "keda-hpa-ocr-worker",
    }


def test_isvc_summary_ready_and_pending() -> None:
    ready = facts.isvc_summary(load("inferenceservice-ready.json"))
    assert ready["ready"] is True
    assert ready["url"] == "http://ocr-ocr-dev.example.com"
    assert ready["predictor_url"] == "http://ocr-predictor-ocr-dev.example.com"
    assert ready["deployment_mode"] == "Standard"
    assert ready["not_ready"] == {}
    pending = facts.isvc_summary(load("inferenceservice-pending.json"))
    assert pending["ready"] is False and pending["url"] is None
    assert "waiting for a Revision" in pending["not_ready"]["PredictorReady"]


def test_nodes_and_their_usage() -> None:
    nodes = facts.nodes_summary([load("node-ready.json"), load("node-notready.json")])
    assert nodes == [
        {"name": "ocr-platform-control-plane", "ready": True, "kubelet": "v1.35.0"},
        {"name": "ocr-platform-worker", "ready": False, "kubelet": None},
    ]
    assert facts.node_usage([load("nodemetrics.json")]) == [
        {"name": "ocr-platform-control-plane", "cpu": "812345678n", "memory": "4012344Ki"}
    ]


def test_a_terminating_pod_is_not_ready() -> None:
    pods = [load("pod-predictor-ready.json"), load("pod-predictor-terminating.json")]
    assert [facts.pod_ready(p) for p in pods] == [True, False]
    assert facts.ready_pods(pods) == 1


def test_exit_codes_of_terminated_containers() -> None:
    assert facts.container_exit_code(load("pod-worker-terminated.json"), "worker") == 0
    assert facts.container_exit_code(load("pod-worker-restarted.json"), "worker") == 137
    assert facts.container_exit_code(load("pod-predictor-ready.json"), "kserve-container") is None
    assert facts.container_exit_code(load("pod-worker-terminated.json"), "no-such-container") is None


@pytest.mark.parametrize("in_mesh", [True, False])
def test_probe_pod_manifests_validate(catalog: SchemaCatalog, in_mesh: bool) -> None:
    namespace = "ocr-dev" if in_mesh else "ocr-probe"
    docs = [json.loads(d) for d in probe_manifests(namespace, "probe-1", "ocr-intruder", "dev.local/ocr:dev",
                                                   in_mesh=in_mesh).split("\n---\n")]  # fmt: skip
    for doc in docs:
        assert catalog.validate(doc) == [], doc
    kinds = [d["kind"] for d in docs]
    assert kinds == (["ServiceAccount", "Pod"] if in_mesh else ["Namespace", "ServiceAccount", "Pod"])
    pod = docs[-1]
    assert pod["spec"]["serviceAccountName"] == "ocr-intruder"
    # Outside the mesh means a namespace the sidecar injector skips.
    if not in_mesh:
        assert docs[0]["metadata"]["labels"]["istio-injection"] == "disabled"


def test_a_container_is_found_on_its_node_by_the_runtime_id_crictl_takes() -> None:
    pod = load("pod-worker-restarted.json")
    node, container_id = facts.container_on_node(pod, "worker") or ("", "")
    assert node == "ocr-worker2" and len(container_id) == 64 and "://" not in container_id
    assert facts.container_on_node(load("pod-worker-terminated.json"), "no-such-container") is None
    assert facts.container_restarts(pod, "worker") == 1


def test_a_sigkill_is_seen_only_as_a_restart_whose_last_run_ended_137() -> None:
    pod = load("pod-worker-restarted.json")
    assert facts.killed_by_sigkill(pod, "worker", restarts_before=0)
    assert not facts.killed_by_sigkill(pod, "worker", restarts_before=1), "no restart since the kill"
    assert not facts.killed_by_sigkill(load("pod-worker-terminated.json"), "worker", restarts_before=0), "exit 0"


def test_kind_kills_from_the_nodes_pid_namespace_with_the_pid_crictl_reports() -> None:
    from harness.acceptance.targets.kind import node_kill_commands

    inspect, kill = node_kill_commands("ocr-worker2", "4f1c")
    assert inspect == ["docker", "exec", "ocr-worker2", "crictl", "inspect", "4f1c"]
    assert kill[:3] == ["docker", "exec", "ocr-worker2"]
    # What runs in the node, run here on a process of our own: sh's kill, the pid an argument (never pasted into
    # the script), and the process dies of SIGKILL.
    victim = subprocess.Popen(["sleep", "30"])
    try:
        subprocess.run([*kill[3:], str(victim.pid)], check=True, timeout=10)
        assert victim.wait(timeout=10) == -9
    finally:
        victim.kill()


def test_the_newest_pods_start_is_read_from_its_conditions() -> None:
    woken, older = load("pod-predictor-woken.json"), load("pod-predictor-ready.json")
    older["metadata"]["creationTimestamp"] = "2026-11-27T00:59:40Z"
    start = facts.newest_pod_start([older, woken])
    assert start is not None and start["pod"] == woken["metadata"]["name"]
    base = datetime(2026, 11, 27, 2, 0, tzinfo=UTC).timestamp()
    assert {k: round(v - base, 3) for k, v in start.items() if k != "pod"} == {
        "created": 0,
        "scheduled": 1,
        "containers_started": 4,
        "ready": 9,
    }
    starting = load("pod-predictor-woken.json")
    next(c for c in starting["status"]["conditions"] if c["type"] == "Ready")["status"] = "False"
    assert facts.newest_pod_start([starting])["ready"] is None  # type: ignore[index]
    assert facts.newest_pod_start([]) is None
