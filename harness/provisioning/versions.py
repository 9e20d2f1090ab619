"""Every external version the platform pins, in one place.

Change a version here and the plan, the install commands and the docs follow. The combination below is
the one that all components support together on Kubernetes 1.35 (docs/operations.md, "What you need").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repo: str  # an https chart repository, or an oci:// reference (then `name` is informational)


KUBERNETES = "1.35.0"
KIND = "v0.31.0"
KIND_NODE_IMAGE = "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
KUBECTL = "v1.35.0"
HELM = "v3.19.0"

METRICS_SERVER = Chart("metrics-server", "3.13.1", "https://kubernetes-sigs.github.io/metrics-server/")
CERT_MANAGER = Chart("cert-manager", "v1.21.1", "oci://quay.io/jetstack/charts/cert-manager")
ISTIO_VERSION = "1.30.3"
ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
ISTIO_BASE = Chart("base", ISTIO_VERSION, ISTIO_REPO)
ISTIOD = Chart("istiod", ISTIO_VERSION, ISTIO_REPO)
ISTIO_GATEWAY = Chart("gateway", ISTIO_VERSION, ISTIO_REPO)
KUBE_PROMETHEUS_STACK = Chart(
    "kube-prometheus-stack", "88.5.3", "oci://ghcr.io/prometheus-community/charts/kube-prometheus-stack"
)
KEDA = Chart("keda", "2.20.2", "https://kedacore.github.io/charts")
KSERVE_VERSION = "v0.20.0"
KSERVE_CRD = Chart("kserve-crd", KSERVE_VERSION, "oci://ghcr.io/kserve/charts/kserve-crd")
KSERVE_RESOURCES = Chart("kserve-resources", KSERVE_VERSION, "oci://ghcr.io/kserve/charts/kserve-resources")
KNATIVE_SERVING = "1.23"
KNATIVE_OPERATOR = Chart("knative-operator", "v1.23.0", "https://knative.github.io/operator")

# envoyproxy/ratelimit publishes no version tags after v1.4.0: pin the image by digest.
RATELIMIT_IMAGE = (
    "docker.io/envoyproxy/ratelimit@sha256:"
    "bf9447467c659cffac57c7b7064fbd584ad9c1afcc983ba1a90816e603f18900"  # tag 05c08d03 (2026-04)
)
REDIS_IMAGE = "docker.io/library/redis:7.4.2-alpine"
PYTHON_BASE_IMAGE = "python:3.11-slim-bookworm"

# sha256 of the tool downloads `harness preflight --install-tools` may fetch, by platform (each from the
# release's published binaries; re-check them against the upstream .sha256 files when a pin changes).
TOOL_SHA256: dict[str, dict[str, str]] = {
    "kind": {
        "linux-amd64": "eb244cbafcc157dff60cf68693c14c9a75c4e6e6fedaf9cd71c58117cb93e3fa",
        "linux-arm64": "8e1014e87c34901cc422a1445866835d1e666f2a61301c27e722bdeab5a1f7e4",
        "darwin-amd64": "a8b3cf77b2ad77aec5bf710d1a2589d9117576132af812885cad41e9dede4d4e",
        "darwin-arm64": "88bf554fe9da6311c9f8c2d082613c002911a476f6b5090e9420b35d84e70c5c",
    },
    "helm": {
        "linux-amd64": "a7f81ce08007091b86d8bd696eb4d86b8d0f2e1b9f6c714be62f82f96a594496",
        "linux-arm64": "440cf7add0aee27ebc93fada965523c1dc2e0ab340d4348da2215737fc0d76ad",
        "darwin-amd64": "09a108c0abda42e45af172be65c49125354bf7cd178dbe10435e94540e49c7b9",
        "darwin-arm64": "31513e1193da4eb4ae042eb5f98ef9aca7890cfa136f4707c8d4f70e2115bef6",
    },
    "kubectl": {
        "linux-amd64": "a2e984a18a0c063279d692533031c1eff93a262afcc0afdc517375432d060989",
        "linux-arm64": "58f82f9fe796c375c5c4b8439850b0f3f4d401a52434052f2df46035a8789e25",
        "darwin-amd64": "2447cb78911b10a667202b078eeb30541ec78d1280c3682921dc81607e148d96",
        "darwin-arm64": "cf699c56340dc775230fde4ef84237d27563ea6ef52164c7d078072b586c3918",
    },
}
