"""The install plan: every command that provisions the platform on kind, in order, with pinned versions.

The plan is data. ``harness kind plan`` prints it (a dry run), ``harness kind up`` runs it, and the unit
tests check it: the order of the platform facts (metrics-server, cert-manager, Istio, Prometheus, KEDA,
KServe), every version from :mod:`harness.versions`, argv lists only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import versions
from harness.versions import Chart

CLUSTER = "ocr-platform"
GATEWAY_NODE_PORT = 30080
APP_NAMESPACE = "ocr-dev"
PROFILES = ("milestone1", "milestone2", "milestone3", "full", "scale-to-zero")
# Errors that mean "the admission webhook is not serving yet", not "the object is wrong".
WEBHOOK_NOT_READY = ("connection refused", "failed calling webhook", "no endpoints available", "context deadline")


@dataclass(frozen=True)
class Step:
    """One provisioning step: a command (argv), or a Python action described in words."""

    name: str
    argv: tuple[str, ...] = ()
    action: Callable[[], None] | None = field(default=None, compare=False)
    retry_on: tuple[str, ...] = ()  # stderr fragments that make the step worth another try
    attempts: int = 1

    def describe(self) -> str:
        if self.argv:
            return " ".join(a if a and " " not in a else repr(a) for a in self.argv)
        return f"(python) {self.name}"


def kind_config(host_port: int) -> str:
    """One node; the gateway's NodePort published on 127.0.0.1 only."""
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [
            {
                "role": "control-plane",
                "extraPortMappings": [
                    {
                        "containerPort": GATEWAY_NODE_PORT,
                        "hostPort": host_port,
                        "listenAddress": "127.0.0.1",
                        "protocol": "TCP",
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def gateway_values() -> str:
    """Values of the Istio gateway chart: a NodePort service, port 80 on the node port kind publishes."""
    values = {
        "service": {
            "type": "NodePort",
            "ports": [
                {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": GATEWAY_NODE_PORT},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443},
            ],
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    return yaml.safe_dump(values, sort_keys=False)


INGRESS_CLASS = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: istio
spec:
  controller: istio.io/ingress-controller
"""

KNATIVE_SERVING = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: knative-serving
---
apiVersion: operator.knative.dev/v1beta1
kind: KnativeServing
metadata:
  name: knative-serving
  namespace: knative-serving
spec:
  version: "{versions.KNATIVE_SERVING}"
  ingress:
    istio:
      enabled: true
  config:
    features:
      kubernetes.podspec-emptydir: enabled
"""


def helm_install(
    release: str,
    chart: Chart,
    *,
    namespace: str,
    values: dict[str, str] | None = None,
    values_file: Path | None = None,
    timeout: str = "10m",
) -> tuple[str, ...]:
    """``helm upgrade --install`` of a pinned chart, waiting for it to be ready."""
    argv = ["helm", "upgrade", "--install", release]
    if chart.repo.startswith("oci://"):
        argv.append(chart.repo)
    else:
        argv += [chart.name, "--repo", chart.repo]
    argv += ["--version", chart.version, "--namespace", namespace, "--create-namespace", "--wait", "--timeout", timeout]
    for key, value in (values or {}).items():
        argv += ["--set", f"{key}={value}"]
    if values_file is not None:
        argv += ["--values", str(values_file)]
    return tuple(argv)


def kubectl(*args: str, context: str = f"kind-{CLUSTER}") -> tuple[str, ...]:
    return ("kubectl", "--context", context, *args)


def profile_needs(profile: str) -> set[str]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return {"knative"} if profile == "scale-to-zero" else set()


def install_plan(
    profile: str,
    work_dir: Path,
    *,
    host_port: int,
    cluster: str = CLUSTER,
    offline_base: bool = False,
    render: Callable[[Path], None] | None = None,
) -> list[Step]:
    """Every step from nothing to a serving platform of ``profile``; files it needs go to ``work_dir``."""
    needs = profile_needs(profile)
    context = f"kind-{cluster}"
    kind_file = work_dir / "kind-config.yaml"
    gateway_file = work_dir / "gateway-values.yaml"
    rendered = work_dir / f"{profile}.yaml"
    ingress_class = work_dir / "ingressclass.yaml"
    knative_file = work_dir / "knative-serving.yaml"

    def write_inputs() -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        kind_file.write_text(kind_config(host_port))
        gateway_file.write_text(gateway_values())
        ingress_class.write_text(INGRESS_CLASS)
        knative_file.write_text(KNATIVE_SERVING)

    istio_values = {"defaultRevision": "default"}
    steps = [
        Step("write the kind config and chart values", action=write_inputs),
        Step(
            "kind cluster",
            (
                "kind",
                "create",
                "cluster",
                "--name",
                cluster,
                "--image",
                versions.KIND_NODE_IMAGE,
                "--config",
                str(kind_file),
                "--wait",
                "120s",
            ),
        ),
        Step(
            "metrics-server",
            helm_install(
                "metrics-server",
                versions.METRICS_SERVER,
                namespace="kube-system",
                values={"args": "{--kubelet-insecure-tls}"},
            ),
        ),
        Step(
            "cert-manager",
            helm_install(
                "cert-manager", versions.CERT_MANAGER, namespace="cert-manager", values={"crds.enabled": "true"}
            ),
        ),
        Step(
            "istio base", helm_install("istio-base", versions.ISTIO_BASE, namespace="istio-system", values=istio_values)
        ),
        Step("istiod", helm_install("istiod", versions.ISTIOD, namespace="istio-system")),
        # The release name gives the gateway its istio=ingressgateway label and its service account.
        Step(
            "istio ingress gateway",
            helm_install(
                "istio-ingressgateway", versions.ISTIO_GATEWAY, namespace="istio-system", values_file=gateway_file
            ),
        ),
        Step("ingress class istio", kubectl("apply", "-f", str(ingress_class), context=context)),
        Step(
            "kube-prometheus-stack",
            helm_install(
                "kube-prometheus-stack",
                versions.KUBE_PROMETHEUS_STACK,
                namespace="monitoring",
                values={
                    "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues": "false",
                    "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues": "false",
                    "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues": "false",
                },
                timeout="15m",
            ),
        ),
        Step("keda", helm_install("keda", versions.KEDA, namespace="keda")),
        Step("kserve crds", helm_install("kserve-crd", versions.KSERVE_CRD, namespace="kserve")),
        Step(
            "kserve controller (Standard mode)",
            helm_install(
                "kserve",
                versions.KSERVE_RESOURCES,
                namespace="kserve",
                values={"kserve.controller.deploymentMode": "Standard"},
            ),
        ),
    ]
    if "knative" in needs:
        steps += [
            Step(
                "knative operator",
                helm_install("knative-operator", versions.KNATIVE_OPERATOR, namespace="knative-operator"),
            ),
            Step(
                "knative serving with net-istio",
                kubectl("apply", "-f", str(knative_file), context=context),
                retry_on=WEBHOOK_NOT_READY,
                attempts=10,
            ),
            Step(
                "knative serving ready",
                kubectl(
                    "wait",
                    "--for=condition=Ready",
                    "knativeserving/knative-serving",
                    "-n",
                    "knative-serving",
                    "--timeout=600s",
                    context=context,
                ),
            ),
        ]
    build = [sys.executable, "-m", "harness", "image", "build", "--tag", "ocr:dev"]
    if offline_base:
        build.append("--offline-base")
    steps += [
        Step("service image", tuple(build)),
        Step("image into the kind node", ("kind", "load", "docker-image", "ocr:dev", "--name", cluster)),
        Step(
            f"render the {profile} overlay (with per-cluster API keys)",
            action=(lambda: render(rendered)) if render else None,
        ),
        # KServe's webhook is not serving when its Deployment is ready: the first apply can be refused.
        Step(
            f"apply the {profile} overlay",
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(rendered), context=context),
            retry_on=WEBHOOK_NOT_READY,
            attempts=12,
        ),
        Step(
            "InferenceService ready",
            kubectl(
                "wait",
                "--for=condition=Ready",
                "inferenceservice/ocr",
                "-n",
                APP_NAMESPACE,
                "--timeout=600s",
                context=context,
            ),
        ),
    ]
    return steps


def teardown_plan(cluster: str = CLUSTER, *, logs_dir: Path | None = None) -> list[Step]:
    """Logs first (``kind export logs``), then the cluster goes."""
    steps = []
    if logs_dir is not None:
        steps.append(Step("export cluster logs", ("kind", "export", "logs", str(logs_dir), "--name", cluster)))
    steps.append(Step("delete the kind cluster", ("kind", "delete", "cluster", "--name", cluster)))
    return steps
