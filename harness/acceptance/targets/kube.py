"""The Kubernetes targets: ``cluster`` (a cluster that has the platform already) and, built on it, ``kind``.

How each promise is observed on a cluster:

* the service, Prometheus (and the gateway, off kind): ``kubectl port-forward``, restarted when it drops;
* the gateway on kind: the NodePort kind publishes on 127.0.0.1;
* replicas, HPA, ScaledObject, InferenceService, nodes: the Kubernetes API (:mod:`harness.provisioning.kube.facts`);
* queue facts: the service's admin command run in the predictor's container (``kubectl exec``);
* worker disruption: deleting worker pods (KEDA owns their count; a scenario that needs workers pins it
  with KEDA's ``paused-replicas`` annotation, removed when the scenario ends);
* logs: every pod of a component, followed from when the target first sees it, so a deleted pod's log
  survives for the steps and the evidence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness import wait
from harness.acceptance.prom import Prometheus
from harness.acceptance.rollout import ClusterRollout, PodTimeline, handover_order
from harness.acceptance.targets.base import Cluster, Gateway, Jobs, Models, Target, TargetOptions
from harness.errors import HarnessError, TargetUnavailable, WaitTimeout
from harness.processes import ManagedProcess
from harness.provisioning import profiles, versions
from harness.provisioning.identity import IMAGE, gateway_host
from harness.provisioning.kube import facts, probe
from harness.provisioning.kube.client import Kube, NotFound
from harness.provisioning.kube.portforward import KubectlProxy, PortForward
from harness.provisioning.plan import APP_NAMESPACE, ISVC
from harness.provisioning.profiles import Profile
from harness.provisioning.secrets import read_api_keys
from harness.provisioning.tools import resolve

PREDICTOR = f"{ISVC}-predictor"
WORKER = "ocr-worker"
GATEWAY_HOST = f"{ISVC}-{APP_NAMESPACE}.example.com"
# The layout model's host on the same gateway (components/layout/mesh): the rate-limit scenario proves one
# key's limit is shared by every host. (KServe's own Ingress, which would serve <isvc>-predictor-<ns>, is
# disabled by the plan: the gateway serves only the hosts the overlay routes.)
LAYOUT_HOST = f"layout-{APP_NAMESPACE}.example.com"
PROMETHEUS = ("monitoring", "svc/kube-prometheus-stack-prometheus", 9090)
GATEWAY = ("istio-system", "svc/istio-ingressgateway", 80)
PROBE_NAMESPACE = "ocr-probe"
RATELIMIT = ("ocr-ratelimit", "ratelimit")
RATELIMIT_SELECTOR = "app.kubernetes.io/name=ratelimit"
# The gateway's API-key authorizer (manifests/components/istio/authz.yaml).
AUTHORIZER = (APP_NAMESPACE, "ocr-authz")
AUTHORIZER_SELECTOR = "app.kubernetes.io/name=ocr-authz"
READY_TIMEOUT_S = 600

# Where each component runs: namespace, label selector, container.
WORKLOADS = {
    "predictor": (APP_NAMESPACE, f"serving.kserve.io/inferenceservice={ISVC}", "kserve-container"),
    "worker": (APP_NAMESPACE, f"app.kubernetes.io/name={WORKER}", "worker"),
    "redis": (APP_NAMESPACE, "app.kubernetes.io/name=ocr-redis", "redis"),
    "gateway": ("istio-system", "istio=ingressgateway", "istio-proxy"),
}
# A PodMonitor's series carry job="<namespace>/<PodMonitor name>" (prometheus-operator's default).
SCRAPE_JOBS = {"predictor": f"{APP_NAMESPACE}/{PREDICTOR}", "worker": f"{APP_NAMESPACE}/{WORKER}"}
API_KEY_CLIENTS = {"team-a": "OCR_API_KEY_PRIMARY", "team-b": "OCR_API_KEY_SECONDARY"}
PROBE_SCRIPT = Path(probe.__file__).read_text()  # run in the probe pod: the standard library only


def component_of(name: str) -> str:
    return "predictor" if name == "service" else name


class ClusterTarget(Target, Models, Gateway, Jobs, Cluster):
    """A cluster that runs the platform already (``harness up --kube-context CTX`` installs it)."""

    name = "cluster"

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(options)
        self.profile = profiles.profile(options.profile or "full")
        self.log_dir = options.artifacts / "cluster"
        self._kube: Kube | None = None
        self._forwards: dict[tuple[str, str, int], PortForward] = {}
        self._proxy: KubectlProxy | None = None
        self._followers: dict[str, ManagedProcess] = {}

    # -- capabilities ---------------------------------------------------------------------------------

    @classmethod
    def deployed(cls, options: TargetOptions) -> Profile:
        return profiles.profile(options.profile or "full")

    @classmethod
    def provides(cls, options: TargetOptions) -> frozenset[str]:
        """What its interfaces serve, of what the deployed profile installed."""
        return super().provides(options) & cls.deployed(options).capabilities

    # -- life cycle -----------------------------------------------------------------------------------

    @property
    def context(self) -> str:
        if not self.options.kube_context:
            raise TargetUnavailable("target cluster needs --kube-context NAME (a context of your kubeconfig)")
        return self.options.kube_context

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.context)
        return self._kube

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.await_platform()

    def await_platform(self, timeout: float = READY_TIMEOUT_S) -> None:
        """The InferenceService Ready, or a clear error that says what is missing."""
        try:
            self.inference_service()
        except NotFound:
            raise TargetUnavailable(
                f"context {self.context} has no InferenceService {APP_NAMESPACE}/{ISVC}: install the platform "
                f"with `harness up --profile {self.profile.name} --kube-context {self.context}`"
            ) from None
        wait.until(
            self.inference_service,
            lambda s: s["ready"],
            timeout=timeout,
            interval=5,
            what=f"InferenceService {APP_NAMESPACE}/{ISVC} Ready",
        )

    def stop(self) -> None:
        self.scenario_finished()
        for forward in self._forwards.values():
            forward.stop()
        for follower in self._followers.values():
            follower.stop(grace=2)
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        self._forwards.clear()
        self._followers.clear()

    # -- reaching the service -----------------------------------------------------------------------

    def _forward(self, namespace: str, resource: str, port: int) -> str:
        key = (namespace, resource, port)
        if key not in self._forwards:
            self._forwards[key] = PortForward(self.context, namespace, resource, port, log_dir=self.log_dir)
        return self._forwards[key].url()

    def service_url(self) -> str:
        if self.profile.knative:
            # A Knative predictor at zero has no pod to forward to: requests go through the activator.
            return self.gateway_url()
        return self._forward(APP_NAMESPACE, f"svc/{PREDICTOR}", 80)

    def model_url(self, model: str) -> str:
        if model == "ocr":
            return self.service_url()
        served = ["layout", "ocr", *(["table"] if "tables" in self.profile.capabilities else [])]
        if model not in served:
            raise TargetUnavailable(f"the cluster serves no model {model!r}; it serves {served}")
        if self.profile.knative:
            raise TargetUnavailable(f"a Knative {model} predictor is reached through the activator by its own host")
        return self._forward(APP_NAMESPACE, f"svc/{model}-predictor", 80)

    def model_host(self, model: str) -> str:
        return gateway_host(model)

    def load_endpoint(self) -> tuple[str, dict[str, str]]:
        if self.profile.knative:
            return (
                self.service_url(),
                self.service_headers(),
            )  # the gateway already: Knative's activator and queue-proxies balance
        if "istio" in self.profile.addons:
            # STRICT mTLS admits no plaintext from outside the mesh: the load enters where clients do, through
            # the gateway, whose Envoy balances every request over the ready pods.
            headers = {"x-api-key": self.api_keys()["team-a"]}
            if host := self.host_header():
                headers["host"] = host
            return self.gateway_url(), headers
        if self._proxy is None:
            self._proxy = KubectlProxy(self.context, log_dir=self.log_dir)
        return self._proxy.service_url(APP_NAMESPACE, PREDICTOR, 80), {}

    def service_headers(self) -> dict[str, str]:
        if not self.profile.knative:
            return {}
        url = self.inference_service().get("predictor_url") or self.inference_service().get("url")
        if not url:
            raise TargetUnavailable("the InferenceService reports no URL yet")
        return {"host": str(url).split("://", 1)[-1].split("/", 1)[0]}

    def gateway_url(self) -> str:
        if "istio" not in self.profile.addons:
            raise TargetUnavailable(f"the {self.profile.name} profile has no ingress gateway")
        return self._forward(*GATEWAY)

    def host_header(self) -> str | None:
        return GATEWAY_HOST

    def describe_gateway(self) -> str | None:
        if "istio" not in self.profile.addons:
            return None
        return f"Istio {versions.ISTIO_VERSION} ingress gateway with Envoy's global rate limit"

    def alternate_hosts(self) -> list[str]:
        return [LAYOUT_HOST]

    def stop_rate_limit_service(self) -> str:
        if "istio" not in self.profile.addons:
            raise TargetUnavailable(f"the {self.profile.name} profile has no rate-limit service")
        return self._stop_deployment(RATELIMIT, RATELIMIT_SELECTOR)

    def stop_api_key_authorizer(self) -> str:
        if "istio" not in self.profile.addons:
            raise TargetUnavailable(f"the {self.profile.name} profile has no API-key authorizer")
        return self._stop_deployment(AUTHORIZER, AUTHORIZER_SELECTOR)

    def _stop_deployment(self, deployment: tuple[str, str], selector: str) -> str:
        """Scale a Deployment to 0 until the scenario ends, and wait for its last pod to go."""
        namespace, name = deployment
        before = facts.deployment_replicas(self.kube.deployment(namespace, name))["desired"]
        self.kube.scale_deployment(namespace, name, 0)
        self._undo.append((f"restarting {namespace}/{name}", lambda: self._restore_deployment(deployment, before)))
        wait.until(lambda: len(self.kube.pods(namespace, selector)), lambda n: n == 0, timeout=120,
                   interval=2, what=f"no {namespace}/{name} pod left")  # fmt: skip
        return f"{namespace}/{name} scaled from {before} to 0"

    def _restore_deployment(self, deployment: tuple[str, str], replicas: int) -> None:
        namespace, name = deployment
        self.kube.scale_deployment(namespace, name, replicas)
        wait.until(lambda: facts.deployment_replicas(self.kube.deployment(namespace, name))["ready"],
                   lambda ready: ready >= replicas, timeout=180, interval=2,
                   what=f"{namespace}/{name} ready again")  # fmt: skip

    def api_keys(self) -> dict[str, str]:

        keys = read_api_keys()
        return {client: keys[name] for client, name in API_KEY_CLIENTS.items()}

    # -- observing ------------------------------------------------------------------------------------

    def prometheus(self) -> Prometheus:
        return Prometheus(self._forward(*PROMETHEUS))

    def scrape_job(self, component: str) -> str:
        try:
            return SCRAPE_JOBS[component_of(component)]
        except KeyError:
            raise TargetUnavailable(f"no PodMonitor scrapes {component!r}") from None

    def _pods(self, component: str) -> list[dict[str, Any]]:
        namespace, selector, _ = WORKLOADS[component_of(component)]
        return self.kube.pods(namespace, selector)

    def _follow(self, component: str) -> None:
        """Start following the log of every pod of the component not followed yet."""
        namespace, _, container = WORKLOADS[component_of(component)]
        for pod in self._pods(component):
            name = facts.pod_name(pod)
            if name in self._followers or not (pod.get("status") or {}).get("containerStatuses"):
                continue
            argv = [resolve("kubectl"), "--context", self.context, "-n", namespace, "logs", "--follow",
                    f"pod/{name}", "-c", container]  # fmt: skip
            log = self.log_dir / "logs" / component_of(component) / f"{name}.log"
            self._followers[name] = ManagedProcess(f"logs-{name}", argv, log).start()

    def logs(self, component: str) -> str:
        if component_of(component) not in WORKLOADS:
            raise TargetUnavailable(f"no component {component!r} on target {self.name}")
        self._follow(component)
        time.sleep(1.0)  # kubectl logs --follow prints what the pod logged so far within a moment
        folder = self.log_dir / "logs" / component_of(component)
        return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))

    def _deployment_replicas(self, component: str) -> dict[str, int] | None:
        """The Deployment counts of a component that runs as one (the Standard-mode predictor, the workers)."""
        name = {"predictor": None if self.profile.knative else PREDICTOR, "worker": WORKER}.get(component)
        return None if name is None else facts.deployment_replicas(self.kube.deployment(APP_NAMESPACE, name))

    def newest_pod_start(self, component: str) -> dict[str, Any] | None:
        return facts.newest_pod_start(self._pods(component))

    def replicas(self, component: str) -> int:
        component = component_of(component)
        state = self._deployment_replicas(component)
        if state is None:
            return facts.ready_pods(self._pods(component))
        # -1 while the Deployment's status predates its spec: unknown, never taken for a count (0 included).
        return state["ready"]

    # -- rollouts -------------------------------------------------------------------------------------

    def _predictor_spec(self) -> dict[str, Any]:
        isvc = self.kube.custom_object("serving.kserve.io", "v1beta1", APP_NAMESPACE, "inferenceservices", ISVC)
        return dict((isvc.get("spec") or {}).get("predictor") or {})

    def _patch_predictor(self, fields: dict[str, Any]) -> None:
        body = {"spec": {"predictor": fields}}
        self.kube.patch_custom_object("serving.kserve.io", "v1beta1", APP_NAMESPACE, "inferenceservices", ISVC, body)

    def ensure_service_replicas(self, count: int) -> int:
        if self.profile.knative:
            raise TargetUnavailable("a Knative predictor's replicas follow its load, not a count")
        predictor = self._predictor_spec()
        low, high = int(predictor.get("minReplicas", 1)), int(predictor.get("maxReplicas", 1))
        if low < count:
            self._patch_predictor({"minReplicas": count, "maxReplicas": max(high, count)})
            self._undo.append(
                (f"minReplicas back to {low}", lambda: self._patch_predictor({"minReplicas": low, "maxReplicas": high}))
            )
        wait.until(lambda: self.replicas("predictor"), lambda n: n >= count, timeout=READY_TIMEOUT_S, interval=3,
                   what=f"{count} ready predictor replicas")  # fmt: skip
        return self.replicas("predictor")

    def roll_out(self, version: str, *, timeout: float) -> dict[str, Any]:
        if self.profile.knative:
            raise TargetUnavailable("a Knative predictor is rolled out by Knative revisions, not by this harness")

        # Four looks a second at every predictor pod, so that the order of "a new pod Ready" and "an old pod
        # terminating" is known to a quarter of a second.
        timeline = PodTimeline()
        last = ClusterRollout(self.kube, APP_NAMESPACE, ISVC).run(version, timeout=timeout, timeline=timeline,
                                                                   interval=0.25)  # fmt: skip
        return {"version": version, "progress": last.seen, "pods": timeline.pods,
                "handover": handover_order(timeline, version)}  # fmt: skip

    def scaling(self, component: str) -> dict[str, Any]:
        component = component_of(component)
        state = self._deployment_replicas(component)
        if state is None:
            seen: dict[str, Any] = {"ready": self.replicas(component)}
        else:
            # What the autoscaler asked for and the pods that exist, ready or not: "0 replicas" means none of
            # either, not merely none ready (a scale-out whose pods are still starting is not 0).
            seen = {"ready": state["ready"], "desired": state["desired"], "current": state["current"]}
        try:
            if component == "predictor" and not self.profile.knative:
                seen["hpa"] = facts.hpa_summary(self.kube.hpa(APP_NAMESPACE, PREDICTOR))
            elif component == "worker":
                seen["scaledobject"] = facts.scaledobject_summary(self._scaled_object())
        except HarnessError as exc:
            seen["autoscaler_error"] = str(exc)
        return seen

    # -- the job path -------------------------------------------------------------------------------

    def jobs_admin(self, *args: str, input: bytes | None = None) -> str:
        if "jobs" not in self.profile.capabilities:
            raise TargetUnavailable(f"the {self.profile.name} profile has no job queue")
        return self.kube.exec(
            APP_NAMESPACE,
            f"deploy/{PREDICTOR}",
            "kserve-container",
            ["python", "-m", "service.jobs.admin", *args],
            input=input,
            timeout=60,
        )

    def _scaled_object(self) -> dict[str, Any]:
        return self.kube.custom_object("keda.sh", "v1alpha1", APP_NAMESPACE, "scaledobjects", WORKER)

    def workers(self) -> list[str]:
        self._follow("worker")
        return sorted(facts.pod_name(p) for p in self._pods("worker") if facts.pod_ready(p))

    def ensure_workers(self, count: int) -> list[str]:
        # KEDA owns the worker count: pause it at `count` for this scenario (KEDA's own mechanism).
        self._set_paused_replicas(str(count))
        self._undo.append(("pausing the workers' ScaledObject", lambda: self._set_paused_replicas(None)))
        wait.until(
            self.workers, lambda names: len(names) >= count, timeout=300, interval=2, what=f"{count} ready workers"
        )
        return self.workers()

    def _set_paused_replicas(self, value: str | None) -> None:
        body = {"metadata": {"annotations": {facts.PAUSED_REPLICAS: value}}}
        self.kube.patch_custom_object("keda.sh", "v1alpha1", APP_NAMESPACE, "scaledobjects", WORKER, body)

    def stop_worker(self, name: str) -> None:
        self._follow("worker")
        # The pod's own grace period: the worker gets SIGTERM, as on a scale-in.
        self.kube.delete_pod(APP_NAMESPACE, name)

    def delete_worker_pod_now(self, name: str) -> None:
        self._follow("worker")
        # The pod object goes at once; the kubelet still sends SIGTERM and kills the container after its
        # minimum grace, so the worker may finish cleanly: this is not a SIGKILL, and is not called one.
        self.kube.delete_pod(APP_NAMESPACE, name, grace_seconds=0)

    def worker_exit_code(self, name: str, timeout: float) -> int:
        last: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.kube.watch_pod(APP_NAMESPACE, name, deadline - time.monotonic()) as events:
                for kind, pod in events:
                    last = {"event": kind, "phase": (pod.get("status") or {}).get("phase")}
                    code = facts.container_exit_code(pod, WORKLOADS["worker"][2])
                    if code is not None:
                        return code
                    if kind == "DELETED":
                        raise HarnessError(f"worker pod {name} was removed before its exit code was reported")
        raise WaitTimeout(f"worker pod {name} to exit", timeout, last)

    # -- the cluster itself ---------------------------------------------------------------------------

    def cluster_facts(self) -> dict[str, Any]:
        seen: dict[str, Any] = {
            "nodes": facts.nodes_summary(self.kube.nodes()),
            "namespaces": sorted(self.kube.namespaces()),
        }
        try:
            seen["node_usage"] = facts.node_usage(self.kube.node_metrics())
        except HarnessError as exc:
            seen["node_usage_error"] = str(exc)
        return seen

    def inference_service(self) -> dict[str, Any]:
        isvc = self.kube.custom_object("serving.kserve.io", "v1beta1", APP_NAMESPACE, "inferenceservices", ISVC)
        return facts.isvc_summary(isvc)

    def image(self) -> str:
        """The image the predictor runs (the probe pods use it too): the one deployed, which names the
        registry when the platform was installed with one, else the image the harness loads into the node."""
        try:
            containers = self._predictor_spec().get("containers") or []
        except HarnessError:
            return IMAGE
        return str(containers[0].get("image") or IMAGE) if containers else IMAGE

    def call_from_pod(self, *, in_mesh: bool, service_account: str, path: str = "/readyz") -> dict[str, Any]:
        namespace = APP_NAMESPACE if in_mesh else PROBE_NAMESPACE
        pod = f"probe-{'mesh' if in_mesh else 'outside'}-{int(time.time())}"
        manifest = probe_manifests(namespace, pod, service_account, self.image(), in_mesh=in_mesh)
        self.kube.kubectl("apply", "-f", "-", input=manifest.encode(), timeout=60)
        self._undo.append((f"probe pod {pod}", lambda: self._delete_probe(namespace, pod)))
        self.kube.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "-n", namespace, "--timeout=180s", timeout=200)
        url = f"http://{PREDICTOR}.{APP_NAMESPACE}.svc.cluster.local{path}"
        out = self.kube.exec(namespace, pod, "probe", ["python", "-c", PROBE_SCRIPT, url, "10"], timeout=60)
        return dict(json.loads(out.strip().splitlines()[-1]))

    def _delete_probe(self, namespace: str, pod: str) -> None:
        self.kube.kubectl("delete", "pod", pod, "-n", namespace, "--wait=false", "--ignore-not-found")

    def collect_evidence(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self.kube.dump(APP_NAMESPACE, dest / APP_NAMESPACE)
        if "istio" in self.profile.addons:
            self.kube.dump("istio-system", dest / "istio-system")


def probe_manifests(namespace: str, pod: str, service_account: str, image: str, *, in_mesh: bool) -> str:
    """A namespace (outside the mesh) or a service account (inside), and a pod that idles until exec'd into."""
    docs: list[dict[str, Any]] = []
    if not in_mesh:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"istio-injection": "disabled"}},
            }
        )
    docs.append(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, "namespace": namespace}}
    )
    annotations = {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'} if in_mesh else {}
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "ocr-probe", "app.kubernetes.io/part-of": "ocr-platform"},
                "annotations": annotations,
            },
            "spec": {
                "serviceAccountName": service_account,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "probe",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", "import time; time.sleep(900)"],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "32Mi"},
                            "limits": {"cpu": "200m", "memory": "128Mi"},
                        },
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )
    return "\n---\n".join(json.dumps(d) for d in docs)
