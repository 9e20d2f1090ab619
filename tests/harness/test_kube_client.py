"""harness.provisioning.kube.client over HTTP: the real Kubernetes Python client, a kubeconfig, and an API server
stand-in on loopback that answers with the schema-validated fixtures. This checks the layer the cluster targets
stand on (paths, raw JSON replies, 404 -> NotFound, merge patches, watches) with whatever version of the
client is installed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import HarnessError
from harness.provisioning.kube.client import Kube, NotFound

FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def a_list(kind: str, items: list[dict[str, Any]], api_version: str = "v1") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": api_version, "metadata": {}, "items": items}


class ApiServer(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}
    seen: list[tuple[str, str, str, bytes]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("Content-Type", ""), b""))
        path = self.path.split("?")[0]
        if "watch=true" in self.path:
            events = [{"type": "MODIFIED", "object": load("pod-worker-terminated.json")}]
            self._reply(200, b"".join(json.dumps(e).encode() + b"\n" for e in events))
            return
        if path in self.routes:
            body = self.routes[path]
            self._reply(200, body, "text/plain" if isinstance(body, bytes) else "application/json")
        else:
            self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                              "code": 404, "message": f"{path} not found"})  # fmt: skip

    def do_PATCH(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.seen.append(("PATCH", self.path, self.headers.get("Content-Type", ""), body))
        self._reply(200, load("scaledobject-worker.json"))


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kube]:
    ApiServer.seen = []
    ApiServer.routes = {
        "/apis/apps/v1/namespaces/ocr-dev/deployments/ocr-predictor": load("deployment-predictor.json"),
        "/apis/autoscaling/v2/namespaces/ocr-dev/horizontalpodautoscalers/ocr-predictor": load("hpa-predictor.json"),
        "/apis/keda.sh/v1alpha1/namespaces/ocr-dev/scaledobjects/ocr-worker": load("scaledobject-worker.json"),
        "/apis/serving.kserve.io/v1beta1/namespaces/ocr-dev/inferenceservices/ocr": load("inferenceservice-ready.json"),
        "/api/v1/namespaces/ocr-dev/pods": a_list("PodList", [load("pod-predictor-ready.json")]),
        "/api/v1/nodes": a_list("NodeList", [load("node-ready.json")]),
        "/api/v1/namespaces": a_list(
            "NamespaceList", [{"metadata": {"name": "ocr-dev"}}, {"metadata": {"name": "keda"}}]
        ),
        "/apis/metrics.k8s.io/v1beta1/nodes": a_list(
            "NodeMetricsList", [load("nodemetrics.json")], "metrics.k8s.io/v1beta1"
        ),
        "/api/v1/namespaces/ocr-dev/pods/ocr-worker-1/log": b'{"event": "job_succeeded"}\n',
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}},
            # Nothing listens on the discard port.
            {"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}},
        ],
        "users": [{"name": "tester", "user": {"token": "t"}}],
        "contexts": [
            {"name": "stand-in", "context": {"cluster": "stand-in", "user": "tester"}},
            {"name": "gone", "context": {"cluster": "gone", "user": "tester"}},
        ],
        "current-context": "stand-in",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    try:
        yield Kube("stand-in")
    finally:
        server.shutdown()
        server.server_close()


def test_objects_come_back_as_the_api_sent_them(kube: Kube) -> None:
    assert kube.deployment("ocr-dev", "ocr-predictor") == load("deployment-predictor.json")
    assert kube.hpa("ocr-dev", "ocr-predictor")["status"]["desiredReplicas"] == 5
    scaled = kube.custom_object("keda.sh", "v1alpha1", "ocr-dev", "scaledobjects", "ocr-worker")
    assert scaled["status"]["hpaName"] == "keda-hpa-ocr-worker"
    isvc = kube.custom_object("serving.kserve.io", "v1beta1", "ocr-dev", "inferenceservices", "ocr")
    assert isvc["status"]["url"] == "http://ocr-ocr-dev.example.com"
    (pod,) = kube.pods("ocr-dev", "serving.kserve.io/inferenceservice=ocr")
    assert pod["metadata"]["name"] == "ocr-predictor-6d9c7b9f8d-x2k4p"
    assert any("labelSelector=serving.kserve.io" in path for _, path, _, _ in ApiServer.seen)
    assert kube.nodes()[0]["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.0"
    assert kube.namespaces() == ["ocr-dev", "keda"]
    assert kube.node_metrics()[0]["usage"]["cpu"] == "812345678n"
    assert kube.pod_log("ocr-dev", "ocr-worker-1", "worker") == '{"event": "job_succeeded"}\n'


def test_a_missing_object_is_not_found(kube: Kube) -> None:
    with pytest.raises(NotFound, match=r"inferenceservices\.serving\.kserve\.io ocr-dev/absent"):
        kube.custom_object("serving.kserve.io", "v1beta1", "ocr-dev", "inferenceservices", "absent")


def test_a_patch_is_a_merge_patch(kube: Kube) -> None:
    body = {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": None}}}
    kube.patch_custom_object("keda.sh", "v1alpha1", "ocr-dev", "scaledobjects", "ocr-worker", body)
    (method, path, content_type, sent) = ApiServer.seen[-1]
    assert (method, path) == ("PATCH", "/apis/keda.sh/v1alpha1/namespaces/ocr-dev/scaledobjects/ocr-worker")
    assert content_type == "application/merge-patch+json"
    assert json.loads(sent) == body  # a null removes the annotation


def test_a_watch_yields_the_raw_pod(kube: Kube) -> None:
    with kube.watch_pod("ocr-dev", "ocr-worker-5b8f6c7d9-abcde", 5) as events:
        kind, pod = next(iter(events))
    assert kind == "MODIFIED"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_an_unreachable_api_server_is_a_harness_error(kube: Kube) -> None:
    with pytest.raises(HarnessError, match="unreachable"):
        Kube("gone").deployment("ocr-dev", "ocr-predictor")
    with pytest.raises(HarnessError, match="cannot use kubeconfig context 'absent'"):
        Kube("absent")


def test_the_dump_keeps_init_containers_logs(tmp_path: Path) -> None:
    """Istio's native sidecar (Kubernetes 1.35) is an init container: its log is evidence too."""
    from harness.errors import HarnessError
    from harness.provisioning.kube.client import Kube

    class Stand(Kube):
        def __init__(self) -> None:  # no cluster: every call below is answered here
            pass

        def kubectl(self, *args: str, timeout: float = 60, input: bytes | None = None) -> str:
            return "ok\n"

        def pods(self, namespace: str, selector: str) -> list[dict]:
            spec = {"initContainers": [{"name": "istio-proxy"}], "containers": [{"name": "kserve-container"}]}
            return [{"metadata": {"name": "ocr-1"}, "spec": spec}]

        def pod_log(self, namespace: str, name: str, container: str | None = None, *, previous: bool = False) -> str:
            if previous:
                raise HarnessError("no previous container")
            return f"{container} says hello\n"

    Stand().dump("ocr-dev", tmp_path)
    assert (tmp_path / "ocr-1.istio-proxy.log").read_text() == "istio-proxy says hello\n"
    assert (tmp_path / "ocr-1.kserve-container.log").read_text() == "kserve-container says hello\n"
