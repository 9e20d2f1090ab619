"""Every external version the platform pins, in one place.

Change a version here and the plan, the install commands and the docs follow. The combination below is
the one that all components support together on Kubernetes 1.35 (see the README's "Pinned versions").
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
