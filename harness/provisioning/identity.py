"""The platform's identity in one place: the names the plan, the manifest checks, the monitoring checks and
the targets share. The manifests under ``manifests/`` spell the same names (the rendered overlays are applied
into ``NAMESPACE`` and their policies are checked against it)."""

from __future__ import annotations

CLUSTER = "ocr-platform"  # the kind cluster
NAMESPACE = "ocr-dev"  # the application's namespace: the predictors, the workers, Redis, the authorizer
ISVC = "ocr"  # the OCR InferenceService
# Knative resolves image tags to digests except for these registries (knative/serving
# config/core/configmaps/deployment.yaml), so a locally loaded image is named under dev.local.
IMAGE = "dev.local/ocr:dev"


def gateway_host(isvc: str = ISVC, namespace: str = NAMESPACE) -> str:
    """The Host an InferenceService answers to at the Istio ingress gateway (KServe's default domain)."""
    return f"{isvc}-{namespace}.example.com"
