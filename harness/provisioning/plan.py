"""The install plan: every command that provisions the platform, in order, with pinned versions.

The plan is data. ``harness plan`` prints it (a dry run), ``harness up`` runs it, the kind target calls the
same functions, and the unit tests check it: the platform facts' order (metrics-server, cert-manager,
Istio, Prometheus, KEDA, Knative before KServe, CRDs before their objects), every version from
:mod:`harness.provisioning.versions`, argv lists only.

Steps belong to one of three groups: ``cluster`` (create the kind cluster), ``platform`` (the add-ons a
profile needs) and ``app`` (build, load and deploy the OCR overlay). ``--kube-context`` drops the
``cluster`` group and installs the rest onto a cluster that exists.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.provisioning import extauthz, versions
from harness.provisioning.identity import CLUSTER, ISVC, NAMESPACE
from harness.provisioning.spec import Spec
from harness.provisioning.versions import Chart

GATEWAY_NODE_PORT = 30080
APP_NAMESPACE = NAMESPACE
IMAGE_LOADERS = ("kind", "minikube", "registry", "none")
GROUPS = ("cluster", "platform", "app")
# Errors that mean "the admission webhook is not serving yet", not "the object is wrong".
WEBHOOK_NOT_READY = ("connection refused", "failed calling webhook", "no endpoints available", "context deadline")
HELM_TIMEOUT = "10m"

# Chart values. Requests are sized so that the largest profile fits a 4-core, 8 GB machine with room for
# the predictor to scale out (docs/operations.md: "Run it on kind"); the upstream defaults assume a production cluster.
ISTIOD_VALUES = {
    # istiod asks 500m / 2Gi by default (istiod chart 1.30: top-level `resources`, `autoscaleEnabled`).
    "resources.requests.cpu": "100m",
    "resources.requests.memory": "256Mi",
    "autoscaleEnabled": "false",
    # Every sidecar's request counts in its pod's CPU utilisation, and so in the predictor's HPA.
    "global.proxy.resources.requests.cpu": "50m",
    "global.proxy.resources.requests.memory": "64Mi",
    # The gateway's API-key authorizer (components/istio/authz.yaml), named by the CUSTOM policy
    # ocr-require-api-key: meshConfig.extensionProviders[0] (harness/provisioning/extauthz.py says each field).
    **extauthz.helm_values(),
}
KUBE_PROMETHEUS_STACK_VALUES = {
    # Select the project's PodMonitors and rules, which carry no Helm release label.
    "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues": "false",
    "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues": "false",
    "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues": "false",
    "prometheus.prometheusSpec.resources.requests.cpu": "200m",
    "prometheus.prometheusSpec.resources.requests.memory": "512Mi",
    # The slow SLO burn-rate alert looks 3 days back.
    "prometheus.prometheusSpec.retention": "4d",
    "alertmanager.enabled": "false",
    # Grafana stays: its sidecar loads the project's dashboard ConfigMaps (label grafana_dashboard=1), in
    # every namespace (the dashboard lives in ocr-dev).
    "grafana.sidecar.dashboards.searchNamespace": "ALL",
    "grafana.resources.requests.cpu": "50m",
    "grafana.resources.requests.memory": "128Mi",
}
KEDA_VALUES = {
    # The operator's metrics (keda_scaler_metrics_value, on the dashboard) through a PodMonitor (chart 2.20.2).
    "prometheus.operator.enabled": "true",
    "prometheus.operator.podMonitor.enabled": "true",
    "resources.operator.requests.cpu": "100m",
    "resources.operator.requests.memory": "128Mi",
    "resources.metricServer.requests.cpu": "50m",
    "resources.metricServer.requests.memory": "64Mi",
}
KSERVE_VALUES = {
    "kserve.controller.deploymentMode": "Standard",
    # The project routes the gateway to the predictor itself (components/istio/gateway.yaml). KServe's own
    # Ingress would add a second host, ocr-predictor-ocr-dev.example.com, outside that routing.
    "kserve.controller.gateway.disableIngressCreation": "true",
}


@dataclass(frozen=True)
class Step:
    """One provisioning step: a command (argv), or a Python action described in words.

    ``done`` is a probe run before the step: when it answers True the step is already done (a cluster that
    exists, a Helm release deployed from the same command) and is skipped, which makes ``up`` idempotent.
    """

    name: str
    argv: tuple[str, ...] = ()
    action: Callable[[], None] | None = field(default=None, compare=False)
    group: str = "platform"
    retry_on: tuple[str, ...] = ()  # output fragments that make the step worth another try
    attempts: int = 1
    timeout_s: float = 20 * 60
    done: Callable[[], bool] | None = field(default=None, compare=False)

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
        "autoscaling": {"enabled": False},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
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


def knative_serving() -> str:
    """The KnativeServing CR: net-istio, emptyDir volumes (the service's /tmp), and dev.local images not
    resolved to digests (the image is loaded into the node, no registry holds it)."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "knative-serving"}},
        {
            "apiVersion": "operator.knative.dev/v1beta1",
            "kind": "KnativeServing",
            "metadata": {"name": "knative-serving", "namespace": "knative-serving"},
            "spec": {
                "version": versions.KNATIVE_SERVING,
                "ingress": {"istio": {"enabled": True}},
                "config": {
                    # Enabled by default in 1.23; said here because the service needs it.
                    "features": {"kubernetes.podspec-volumes-emptydir": "enabled"},
                    "deployment": {"registries-skipping-tag-resolving": "kind.local,ko.local,dev.local"},
                    # Knative's default domain (svc.cluster.local) is not served by the ingress gateway.
                    "domain": {"example.com": ""},
                },
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def fingerprint(argv: tuple[str, ...]) -> str:
    """A short digest of a command: a Helm release records it, so an identical re-run can be skipped."""
    return "harness:" + hashlib.sha256("\0".join(argv).encode()).hexdigest()[:16]


def helm_install(
    release: str,
    chart: Chart,
    *,
    namespace: str,
    context: str,
    values: dict[str, str] | None = None,
    values_file: Path | None = None,
    timeout: str = HELM_TIMEOUT,
) -> tuple[str, ...]:
    """``helm upgrade --install`` of a pinned chart, waiting for it to be ready; the command's fingerprint
    goes into the release description."""
    argv = ["helm", "upgrade", "--install", release]
    if chart.repo.startswith("oci://"):
        argv.append(chart.repo)
    else:
        argv += [chart.name, "--repo", chart.repo]
    argv += ["--version", chart.version, "--namespace", namespace, "--create-namespace", "--kube-context", context]
    argv += ["--wait", "--timeout", timeout]
    for key, value in (values or {}).items():
        argv += ["--set", f"{key}={value}"]
    if values_file is not None:
        argv += ["--values", str(values_file)]
    return (*argv, "--description", fingerprint(tuple(argv)))


def kubectl(*args: str, context: str) -> tuple[str, ...]:
    return ("kubectl", "--context", context, *args)


@dataclass(frozen=True)
class Probes:
    """How the plan asks whether a step is done already; the runner supplies real ones."""

    cluster_exists: Callable[[str], bool] = lambda cluster: False
    release_matches: Callable[[str, str, str, str], bool] = lambda context, namespace, release, desc: False
    release_exists: Callable[[str, str, str], bool] = lambda context, namespace, release: False


def serving_mode_conflict(spec: Spec, probes: Probes) -> str | None:
    """Why the cluster cannot take the profile's serving mode in place, or None when it can.

    KServe cannot move an InferenceService between Standard and Knative mode: its webhook refuses a change of
    ``serving.kserve.io/deploymentMode`` once the status records one, and its controller looks for Knative's
    Service CRD only when it starts, so Knative installed after KServe is never used. A cluster that has KServe
    keeps the mode it was installed for: with Knative (the scale-to-zero profile) or without (the milestones).
    """
    ctx = spec.context
    if not probes.release_exists(ctx, "kserve", "kserve"):
        return None  # no KServe yet: this run installs it in the profile's mode
    has_knative = probes.release_exists(ctx, "knative-operator", "knative-operator")
    wants_knative = "knative" in spec.profile.addons
    if has_knative == wants_knative:
        return None
    now = "Knative mode (a scale-to-zero cluster)" if has_knative else "Standard mode (KServe without Knative)"
    wanted = "Knative" if wants_knative else "Standard"
    way_out = (
        f"delete it first (harness down --cluster {spec.cluster}) or give this profile a cluster of its own "
        f"(harness up --cluster NAME)"
        if spec.owns_cluster
        else "use another cluster for this profile"
    )
    return (
        f"cluster {ctx} serves InferenceServices in {now}; the {spec.profile.name} profile needs {wanted} mode, "
        f"which KServe cannot switch in place (its webhook refuses a deploymentMode change, and its controller "
        f"looks for Knative only when it starts): {way_out}"
    )


def _helm_step(name: str, argv: tuple[str, ...], probes: Probes, **kw: object) -> Step:
    release, namespace, context = argv[3], argv[argv.index("--namespace") + 1], argv[argv.index("--kube-context") + 1]
    description = argv[-1]
    return Step(
        name,
        argv,
        done=lambda: probes.release_matches(context, namespace, release, description),
        **kw,  # type: ignore[arg-type]
    )


def platform_steps(spec: Spec, probes: Probes) -> list[Step]:
    """The add-ons the profile needs, in the platform facts' order."""
    ctx = spec.context
    addons = spec.profile.addons
    work = spec.work_dir

    def helm(
        name: str,
        release: str,
        chart: Chart,
        namespace: str,
        values: dict[str, str] | None = None,
        values_file: Path | None = None,
        timeout: str = HELM_TIMEOUT,
    ) -> Step:
        argv = helm_install(
            release, chart, namespace=namespace, context=ctx, values=values, values_file=values_file, timeout=timeout
        )
        return _helm_step(name, argv, probes)

    steps: list[Step] = []
    if "metrics-server" in addons:
        # kind's kubelets serve certificates without IP SANs.
        steps.append(
            helm("metrics-server", "metrics-server", versions.METRICS_SERVER, "kube-system",
                 values={"args": "{--kubelet-insecure-tls}"})
        )  # fmt: skip
    if "cert-manager" in addons:
        steps.append(
            helm("cert-manager", "cert-manager", versions.CERT_MANAGER, "cert-manager", values={"crds.enabled": "true"})
        )
    if "istio" in addons:
        steps += [
            helm("istio base", "istio-base", versions.ISTIO_BASE, "istio-system",
                 values={"defaultRevision": "default"}),
            helm("istiod", "istiod", versions.ISTIOD, "istio-system", values=ISTIOD_VALUES),
            # The release name gives the gateway its istio=ingressgateway label and its service account.
            helm("istio ingress gateway", "istio-ingressgateway", versions.ISTIO_GATEWAY, "istio-system",
                 values_file=work / "gateway-values.yaml"),
            Step("ingress class istio", kubectl("apply", "-f", str(work / "ingressclass.yaml"), context=ctx)),
        ]  # fmt: skip
    if "prometheus" in addons:
        steps.append(
            helm("kube-prometheus-stack", "kube-prometheus-stack", versions.KUBE_PROMETHEUS_STACK, "monitoring",
                 values=KUBE_PROMETHEUS_STACK_VALUES, timeout="15m")
        )  # fmt: skip
    if "keda" in addons:
        steps.append(helm("keda", "keda", versions.KEDA, "keda", values=KEDA_VALUES))
    # KServe's controller looks for the Knative Service CRD once, at start-up: Knative comes first.
    if "knative" in addons:
        steps += [
            helm("knative operator", "knative-operator", versions.KNATIVE_OPERATOR, "knative-operator"),
            Step(
                "knative serving with net-istio",
                kubectl("apply", "-f", str(work / "knative-serving.yaml"), context=ctx),
                retry_on=WEBHOOK_NOT_READY,
                attempts=10,
            ),
            Step(
                "knative serving ready",
                kubectl("wait", "--for=condition=Ready", "knativeserving/knative-serving", "-n", "knative-serving",
                        "--timeout=600s", context=ctx),
            ),
        ]  # fmt: skip
    if "kserve" in addons:
        steps += [
            helm("kserve crds", "kserve-crd", versions.KSERVE_CRD, "kserve"),
            helm("kserve controller (Standard mode)", "kserve", versions.KSERVE_RESOURCES, "kserve",
                 values=KSERVE_VALUES),
        ]  # fmt: skip
    return steps


def image_steps(spec: Spec) -> list[Step]:
    """Build the service image and put it where the cluster's kubelets find it."""
    build = [sys.executable, "-m", "harness", "image", "build", "--tag", spec.image]
    if spec.offline_base:
        build.append("--offline-base")
    steps = [Step("service image", tuple(build), group="app", timeout_s=40 * 60)]
    archive = str(spec.work_dir / "ocr-image.tar")
    if spec.image_loader == "kind":
        # An archive, not `kind load docker-image`: the latter fails on Docker's containerd image store for
        # images with attestations (kind #3795).
        steps += [
            Step("image archive", ("docker", "save", "--output", archive, spec.image), group="app"),
            Step(
                "image into the kind node",
                ("kind", "load", "image-archive", archive, "--name", spec.cluster),
                group="app",
            ),
        ]
    elif spec.image_loader == "minikube":
        steps.append(
            Step("image into minikube", ("minikube", "-p", spec.context, "image", "load", spec.image), group="app")
        )
    elif spec.image_loader == "registry":
        steps.append(Step("image to the registry", ("docker", "push", spec.image), group="app"))
    return steps


def app_steps(spec: Spec, render: Callable[[Path], None] | None) -> list[Step]:
    ctx = spec.context
    rendered = spec.work_dir / f"{spec.profile.name}.yaml"
    steps = [
        *image_steps(spec),
        Step(
            f"render the {spec.profile.name} overlay (per-cluster secrets, image {spec.image})",
            action=(lambda: render(rendered)) if render else None,
            group="app",
        ),
        # KServe's webhook is not serving when its Deployment is ready: the first apply can be refused.
        Step(
            f"apply the {spec.profile.name} overlay",
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(rendered), context=ctx),
            group="app",
            retry_on=WEBHOOK_NOT_READY,
            attempts=12,
        ),
        Step(
            "InferenceService ready",
            kubectl(
                "wait",
                "--for=condition=Ready",
                f"inferenceservice/{ISVC}",
                "-n",
                APP_NAMESPACE,
                "--timeout=600s",
                context=ctx,
            ),
            group="app",
        ),
    ]
    if "keda" in spec.profile.addons:
        steps.append(
            Step(
                "workers' ScaledObject ready",
                kubectl(
                    "wait",
                    "--for=condition=Ready",
                    "scaledobject/ocr-worker",
                    "-n",
                    APP_NAMESPACE,
                    "--timeout=300s",
                    context=ctx,
                ),
                group="app",
            )
        )
    return steps


def install_plan(
    spec: Spec,
    *,
    probes: Probes | None = None,
    render: Callable[[Path], None] | None = None,
    only: str | None = None,
) -> list[Step]:
    """Every step from nothing (or from an existing cluster) to a serving platform of the spec's profile."""
    probes = probes or Probes()
    work = spec.work_dir

    def write_inputs() -> None:
        work.mkdir(parents=True, exist_ok=True)
        if spec.owns_cluster:
            (work / "kind-config.yaml").write_text(kind_config(spec.host_port))
        (work / "gateway-values.yaml").write_text(gateway_values())
        (work / "ingressclass.yaml").write_text(INGRESS_CLASS)
        (work / "knative-serving.yaml").write_text(knative_serving())

    def check_serving_mode() -> None:
        if conflict := serving_mode_conflict(spec, probes):
            raise HarnessError(conflict)

    steps = [
        Step("write the cluster config and chart values", action=write_inputs, group="setup"),
        # Before anything changes: a cluster of the other serving mode is refused in one line.
        Step("the cluster's KServe serving mode fits the profile", action=check_serving_mode, group="setup"),
    ]
    if spec.owns_cluster:
        argv = (
            "kind",
            "create",
            "cluster",
            "--name",
            spec.cluster,
            "--image",
            versions.KIND_NODE_IMAGE,
            "--config",
            str(work / "kind-config.yaml"),
            "--wait",
            "120s",
        )
        steps.append(Step("kind cluster", argv, group="cluster", done=lambda: probes.cluster_exists(spec.cluster)))
    steps += platform_steps(spec, probes)
    steps += app_steps(spec, render)
    if only is not None:
        if only not in GROUPS:
            raise ValueError(f"unknown step group {only!r}; choose one of {', '.join(GROUPS)}")
        steps = [s for s in steps if s.group in (only, "setup")]
    return steps


def teardown_plan(cluster: str = CLUSTER) -> list[Step]:
    """The kind cluster goes (its logs are exported before, best effort, by the runner)."""
    return [Step("delete the kind cluster", ("kind", "delete", "cluster", "--name", cluster), group="cluster")]
