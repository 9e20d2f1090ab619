"""The cluster target's wiring: which object it reads for which question, and what it changes and undoes.

The API server is the I/O boundary here: a stand-in answers with the schema-validated fixtures of
``fixtures/kube`` (see test_kube_facts.py), keyed by the exact kind, namespace and name the target asks
for, so a target asking for the wrong object gets a NotFound and fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.acceptance.targets import ClusterTarget, TargetOptions
from harness.errors import TargetUnavailable
from harness.provisioning.kube.client import NotFound

FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


class ApiServer:
    """Answers the calls ClusterTarget makes of harness.provisioning.kube.client.Kube, from fixtures."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, ...], dict[str, Any]] = {
            ("deployment", "ocr-dev", "ocr-predictor"): load("deployment-predictor.json"),
            ("deployment", "ocr-dev", "ocr-worker"): load("deployment-worker-stale.json"),
            ("hpa", "ocr-dev", "ocr-predictor"): load("hpa-predictor.json"),
            ("keda.sh", "v1alpha1", "ocr-dev", "scaledobjects", "ocr-worker"): load("scaledobject-worker.json"),
            ("serving.kserve.io", "v1beta1", "ocr-dev", "inferenceservices", "ocr"): load(
                "inferenceservice-ready.json"
            ),
        }
        self.pod_lists: dict[tuple[str, str], list[dict[str, Any]]] = {
            ("ocr-dev", "serving.kserve.io/inferenceservice=ocr"): [
                load("pod-predictor-ready.json"),
                load("pod-predictor-terminating.json"),
            ],
        }
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.scaled: list[tuple[str, str, int]] = []
        self.execs: list[tuple[str, str, str, list[str], bytes | None]] = []

    def _get(self, *key: str) -> dict[str, Any]:
        if key not in self.objects:
            raise NotFound(f"{key}: not found")
        return self.objects[key]

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get("deployment", namespace, name)

    def hpa(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get("hpa", namespace, name)

    def custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        return self._get(group, version, namespace, plural, name)

    def patch_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any]
    ) -> None:
        self._get(group, version, namespace, plural, name)
        self.patches.append((name, body))

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        deployment = self._get("deployment", namespace, name)
        deployment["spec"]["replicas"] = replicas
        deployment["status"]["readyReplicas"] = replicas
        self.scaled.append((namespace, name, replicas))

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.pod_lists.get((namespace, selector), [])

    def nodes(self) -> list[dict[str, Any]]:
        return [load("node-ready.json")]

    def namespaces(self) -> list[str]:
        return ["ocr-dev", "kube-system"]

    def node_metrics(self) -> list[dict[str, Any]]:
        return [load("nodemetrics.json")]

    def exec(self, namespace: str, target: str, container: str, argv: list[str], *, input: bytes | None = None,
             timeout: float = 60) -> str:  # fmt: skip
        self.execs.append((namespace, target, container, argv, input))
        return json.dumps({"lag": 3, "entries_added": 40, "dead_letter_ids": ["a" * 32], "job_id": "b" * 32})


def target(tmp_path: Path, profile: str = "milestone3") -> tuple[ClusterTarget, ApiServer]:
    server = ApiServer()
    t = ClusterTarget(TargetOptions(artifacts=tmp_path, kube_context="ctx", profile=profile))
    t._kube = server  # type: ignore[assignment]
    return t, server


def test_replicas_and_what_the_autoscalers_see(tmp_path: Path) -> None:
    t, _ = target(tmp_path)
    assert t.replicas("predictor") == 2
    assert t.replicas("service") == 2  # the service is the predictor on a cluster
    # The worker Deployment's status is older than its spec (scaled to 0, two pods still reported ready):
    # no count at all, neither its stale 2 nor a 0 that "0 replicas" would take for done.
    assert t.replicas("worker") == -1
    predictor = t.scaling("predictor")
    assert predictor["hpa"]["desired"] == 5 and predictor["hpa"]["cpu_target"] == 65
    assert (predictor["desired"], predictor["current"]) == (3, 3)
    worker = t.scaling("worker")
    assert worker["scaledobject"]["paused_replicas"] == "2" and worker["scaledobject"]["ready"] is True
    assert (worker["ready"], worker["desired"], worker["current"]) == (-1, 0, 2)


def test_a_knative_predictor_is_counted_by_its_ready_pods(tmp_path: Path) -> None:
    t, _ = target(tmp_path, "scale-to-zero")
    assert t.replicas("predictor") == 1  # one Ready, one terminating
    assert t.service_headers() == {"host": "ocr-predictor-ocr-dev.example.com"}


def test_the_inference_service_and_the_cluster(tmp_path: Path) -> None:
    t, _ = target(tmp_path)
    assert t.inference_service()["ready"] is True
    facts = t.cluster_facts()
    assert facts["nodes"][0]["ready"] is True
    assert facts["namespaces"] == ["kube-system", "ocr-dev"]
    assert facts["node_usage"][0]["cpu"] == "812345678n"


def test_workers_are_pinned_with_keda_and_released_when_the_scenario_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t, server = target(tmp_path)
    monkeypatch.setattr(t, "_follow", lambda component: None)  # no `kubectl logs -f` against a stand-in
    ready = load("pod-predictor-ready.json")
    server.pod_lists[("ocr-dev", "app.kubernetes.io/name=ocr-worker")] = [
        {**ready, "metadata": {**ready["metadata"], "name": f"ocr-worker-{i}"}} for i in (1, 2)
    ]
    assert t.ensure_workers(2) == ["ocr-worker-1", "ocr-worker-2"]
    t.scenario_finished()
    assert server.patches == [
        ("ocr-worker", {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "2"}}}),
        ("ocr-worker", {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": None}}}),
    ]
    assert t._undo == []


def test_queue_facts_come_from_the_admin_command_in_the_predictor(tmp_path: Path) -> None:
    t, server = target(tmp_path)
    assert t.queue_lag() == 3
    assert t.entries_added() == 40
    assert t.dead_letters() == ["a" * 32]
    assert t.inject_job(b"\x89PNG damaged") == "b" * 32
    namespace, where, container, argv, data = server.execs[-1]
    assert (namespace, where, container) == ("ocr-dev", "deploy/ocr-predictor", "kserve-container")
    assert argv == ["python", "-m", "service.jobs.admin", "inject"] and data == b"\x89PNG damaged"
    m1, _ = target(tmp_path, "milestone1")
    with pytest.raises(TargetUnavailable, match="no job queue"):
        m1.queue_lag()


def test_prometheus_jobs_are_the_podmonitors(tmp_path: Path) -> None:
    t, _ = target(tmp_path)
    assert t.scrape_job("service") == "ocr-dev/ocr-predictor"
    assert t.scrape_job("worker") == "ocr-dev/ocr-worker"
    with pytest.raises(TargetUnavailable):
        t.scrape_job("redis")


def test_the_gateway_exists_only_with_istio(tmp_path: Path) -> None:
    t, _ = target(tmp_path, "milestone1")
    with pytest.raises(TargetUnavailable, match="no ingress gateway"):
        t.gateway_url()
    m2 = ClusterTarget(TargetOptions(artifacts=tmp_path, profile="milestone2"))
    # The hosts the steps send to are the ones the overlay's VirtualServices route: ocr's, then layout's.
    assert m2.host_header() == virtual_service_host("components/istio/gateway.yaml")
    assert m2.alternate_hosts() == [virtual_service_host("components/layout/mesh/gateway.yaml")]


def virtual_service_host(manifest: str) -> str:
    import yaml

    docs = yaml.safe_load_all((Path(__file__).parents[2] / "manifests" / manifest).read_text())
    (service,) = [d for d in docs if d and d["kind"] == "VirtualService"]
    (host,) = service["spec"]["hosts"]
    return str(host)


def test_a_cluster_without_a_context_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TargetUnavailable, match="--kube-context"):
        ClusterTarget(TargetOptions(artifacts=tmp_path)).start()


@pytest.mark.parametrize(
    ("stop", "namespace", "name", "replicas", "absent"),
    [
        ("stop_rate_limit_service", "ocr-ratelimit", "ratelimit", 1, "no rate-limit service"),
        ("stop_api_key_authorizer", "ocr-dev", "ocr-authz", 2, "no API-key authorizer"),
    ],
)
def test_a_gateway_dependency_is_stopped_for_a_scenario_and_restarted_after(
    tmp_path: Path, stop: str, namespace: str, name: str, replicas: int, absent: str
) -> None:
    t, server = target(tmp_path, "milestone2")
    deployment = load("deployment-predictor.json")
    deployment["metadata"].update(name=name, namespace=namespace)
    deployment["spec"]["replicas"] = replicas
    deployment["status"].update(replicas=replicas, readyReplicas=replicas)
    server.objects[("deployment", namespace, name)] = deployment
    assert getattr(t, stop)() == f"{namespace}/{name} scaled from {replicas} to 0"
    assert server.scaled == [(namespace, name, 0)]
    t.scenario_finished()
    assert server.scaled[-1] == (namespace, name, replicas)
    m1, _ = target(tmp_path, "milestone1")
    with pytest.raises(TargetUnavailable, match=absent):
        getattr(m1, stop)()


@pytest.mark.parametrize(
    ("manifest", "deployment", "selector"),
    [
        ("components/ratelimit/ratelimit.yaml", "RATELIMIT", "RATELIMIT_SELECTOR"),
        ("components/istio/authz.yaml", "AUTHORIZER", "AUTHORIZER_SELECTOR"),
    ],
)
def test_the_deployments_a_scenario_stops_are_the_ones_the_manifests_declare(
    manifest: str, deployment: str, selector: str
) -> None:
    import yaml

    from harness.acceptance.targets import kube

    namespace, name = getattr(kube, deployment)
    docs = [d for d in yaml.safe_load_all((Path(__file__).parents[2] / "manifests" / manifest).read_text()) if d]
    found = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    assert len(found) == 1, f"no Deployment {name} in {manifest}"
    assert found[0]["metadata"]["namespace"] == namespace
    key, _, value = getattr(kube, selector).partition("=")
    assert found[0]["spec"]["template"]["metadata"]["labels"][key] == value


def test_sustained_load_is_balanced_over_every_replica(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.provisioning.kube.portforward import KubectlProxy

    # Without a mesh: the API server's service proxy (a random ready endpoint per request), never a
    # port-forward (one pod).
    monkeypatch.setattr(KubectlProxy, "url", lambda self: "http://127.0.0.1:8001")
    m1, _ = target(tmp_path, "milestone1")
    assert m1.load_endpoint() == ("http://127.0.0.1:8001/api/v1/namespaces/ocr-dev/services/ocr-predictor:80/proxy", {})
    # With STRICT mTLS only the gateway lets a client in: its Envoy balances, with a provisioned key.
    monkeypatch.setattr(ClusterTarget, "gateway_url", lambda self: "http://127.0.0.1:8080")
    monkeypatch.setattr(ClusterTarget, "api_keys", lambda self: {"team-a": "key-a", "team-b": "key-b"})
    m2, _ = target(tmp_path, "milestone2")
    assert m2.load_endpoint() == ("http://127.0.0.1:8080", {"x-api-key": "key-a", "host": "ocr-ocr-dev.example.com"})


def test_probe_pods_run_the_image_the_predictor_runs(tmp_path: Path) -> None:
    t, server = target(tmp_path, "milestone2")
    assert t.image() == "dev.local/ocr:dev"
    # Installed with --image-registry: the deployed image names the registry, and the probes follow it.
    isvc = server.objects[("serving.kserve.io", "v1beta1", "ocr-dev", "inferenceservices", "ocr")]
    isvc["spec"]["predictor"]["containers"][0]["image"] = "ghcr.io/me/ocr:dev"
    assert t.image() == "ghcr.io/me/ocr:dev"
