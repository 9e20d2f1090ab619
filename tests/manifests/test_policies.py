"""The platform's promises: every overlay keeps them, and every rule is shown to catch the break it is for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from harness.checks.manifests import policies
from harness.checks.manifests.overlays import OVERLAYS, Profile, infer_profile
from harness.checks.manifests.policies import redis
from harness.checks.manifests.schemas import CLUSTER_SCOPED_BUILTINS, SchemaCatalog
from harness.checks.manifests.validate import check_objects
from harness.provisioning.objects import Finding, Obj
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]


def builtin_scope(_api_version: str, kind: str) -> bool:
    """Scope without CRDs: the rules' tests need no schema catalog."""
    return kind not in CLUSTER_SCOPED_BUILTINS


def run(objects: list[Obj], overlay: str, rule: str) -> list[Finding]:
    return policies.check(policies.Context(objects, OVERLAYS[overlay], builtin_scope), only=[rule])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_overlay_keeps_every_promise(overlay: str, catalog: SchemaCatalog, rendered: Rendered) -> None:
    objects = rendered(overlay)
    assert [str(f) for f in check_objects(objects, catalog, OVERLAYS[overlay])] == []


# --- how to break things ----------------------------------------------------------------------------------


def predictor(objects: list[Obj]) -> Obj:
    return the(objects, "InferenceService", "ocr")["spec"]["predictor"]


def isvc_annotations(objects: list[Obj]) -> dict[str, str]:
    return the(objects, "InferenceService", "ocr")["metadata"]["annotations"]


def pod(objects: list[Obj], name: str) -> Obj:
    return the(objects, "Deployment", name)["spec"]["template"]["spec"]


def container(objects: list[Obj], name: str) -> Obj:
    return pod(objects, name)["containers"][0]


def set_env(entry: Obj, name: str, value: str) -> None:
    next(var for var in entry["env"] if var["name"] == name)["value"] = value


def trigger(objects: list[Obj]) -> Obj:
    return the(objects, "ScaledObject", "ocr-worker")["spec"]["triggers"][0]["metadata"]


def ratelimit_config(objects: list[Obj], text: str) -> None:
    configmap = next(o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {}))
    configmap["data"]["config.yaml"] = text


def ratelimit_filter(objects: list[Obj]) -> Obj:
    return the(objects, "EnvoyFilter", "ocr-ratelimit-filter")["spec"]["configPatches"][0]["patch"]["value"][
        "typed_config"
    ]


def rate_limit_action(objects: list[Obj]) -> Obj:
    patch = the(objects, "EnvoyFilter", "ocr-ratelimit-actions")["spec"]["configPatches"][0]
    return patch["patch"]["value"]["rate_limits"][0]["actions"][0]["request_headers"]


def rate_limits_patch(objects: list[Obj]) -> Obj:
    return the(objects, "EnvoyFilter", "ocr-ratelimit-actions")["spec"]["configPatches"][0]


def drop(objects: list[Obj], kind: str, name: str, namespace: str | None = None) -> None:
    for obj in list(objects):
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and namespace in (None, meta.get("namespace")):
            objects.remove(obj)


def env_var(entry: Obj, name: str) -> Obj:
    return next(var for var in entry["env"] if var["name"] == name)


def redis_script(objects: list[Obj], old: str, new: str) -> None:
    command = container(objects, "ocr-redis")["command"]
    assert old in command[-1]
    command[-1] = command[-1].replace(old, new)


def redis_policy(objects: list[Obj], name: str = "ocr-redis") -> Obj:
    return the(objects, "NetworkPolicy", name)["spec"]


def move_password_after_url(objects: list[Obj]) -> None:
    env = container(objects, "ocr-worker")["env"]
    password = env_var(container(objects, "ocr-worker"), "OCR_REDIS_PASSWORD")
    env.remove(password)
    env.append(password)


def probe_logs_in_with_another_variable(objects: list[Obj]) -> None:
    redis = container(objects, "ocr-redis")
    env_var(redis, "REDISCLI_AUTH")["name"] = "REDIS_PASSWORD"
    redis_script(objects, "$REDISCLI_AUTH", "$REDIS_PASSWORD")


def api_key_policy(objects: list[Obj]) -> Obj:
    return the(objects, "AuthorizationPolicy", "ocr-require-api-key")["spec"]


def gateway_routes(objects: list[Obj]) -> list[Obj]:
    """The HTTP routes of the VirtualService on the ingress gateway: one, to the predictor."""
    routes = the(objects, "VirtualService", "ocr")["spec"]["http"]
    assert [r["name"] for r in routes] == ["predictor"]
    return routes


def authz_pod(objects: list[Obj]) -> Obj:
    return the(objects, "Deployment", "ocr-authz")["spec"]["template"]["spec"]


def authz_allow(objects: list[Obj]) -> Obj:
    return the(objects, "AuthorizationPolicy", "ocr-authz-allow-ingressgateway")["spec"]["rules"][0]


def authz_fence(objects: list[Obj]) -> Obj:
    return the(objects, "NetworkPolicy", "ocr-authz")["spec"]["ingress"][0]


def match_keys_in_the_policy(objects: list[Obj]) -> None:
    """The design this replaced: the keys listed in an ALLOW policy on the gateway."""
    spec = api_key_policy(objects)
    spec.update(action="ALLOW", rules=[{"when": [{"key": "request.headers[x-api-key]", "values": ["k1", "k2"]}]}])
    spec.pop("provider")


@dataclass(frozen=True)
class Case:
    id: str
    overlay: str
    rule: str
    breaks: Callable[[list[Obj]], object]
    obj: str
    message: str
    path: str | None = None


ISVC = "InferenceService/ocr-dev/ocr"
WORKER = "Deployment/ocr-dev/ocr-worker"
SCALED = "ScaledObject/ocr-dev/ocr-worker"
GATEWAY_ROUTES = "VirtualService/ocr-dev/ocr"
API_KEY_POLICY = "AuthorizationPolicy/istio-system/ocr-require-api-key"
AUTHZ = "Deployment/ocr-dev/ocr-authz"
AUTHZ_ALLOW = "AuthorizationPolicy/ocr-dev/ocr-authz-allow-ingressgateway"
RATELIMIT_ACTIONS = "EnvoyFilter/istio-system/ocr-ratelimit-actions"
RATELIMIT_FILTER = "EnvoyFilter/istio-system/ocr-ratelimit-filter"
REDIS = "Deployment/ocr-dev/ocr-redis"
REDIS_FENCE = "NetworkPolicy/ocr-dev/ocr-redis"
RATELIMIT_CONFIG = (
    "domain: ocr-api\ndescriptors:\n  - key: api_key\n    rate_limit: {unit: second, requests_per_unit: 10}\n"
)

CASES = [
    # governance: a second InferenceService gets what the first gets (more breaks in test_governance.py)
    Case(
        "second-model-unfenced",
        "full",
        "isvc-governance",
        lambda o: drop(o, "AuthorizationPolicy", "layout-predictor-allow-ingressgateway"),
        "InferenceService/ocr-dev/layout",
        "no ALLOW AuthorizationPolicy admits",
        "metadata",
    ),
    # workloads
    Case(
        "no memory limit",
        "milestone1",
        "container-resources",
        lambda o: predictor(o)["containers"][0]["resources"]["limits"].pop("memory"),
        ISVC,
        "sets no limits.memory",
        "spec.predictor.containers[0].resources.limits.memory",
    ),
    Case(
        "no cpu request",
        "milestone3",
        "container-resources",
        lambda o: container(o, "ocr-redis")["resources"]["requests"].pop("cpu"),
        "Deployment/ocr-dev/ocr-redis",
        "sets no requests.cpu",
        "spec.template.spec.containers[0].resources.requests.cpu",
    ),
    Case(
        "no liveness probe",
        "milestone3",
        "container-probes",
        lambda o: container(o, "ocr-worker").pop("livenessProbe"),
        WORKER,
        "has no livenessProbe",
        "spec.template.spec.containers[0].livenessProbe",
    ),
    Case(
        "no readiness probe",
        "milestone1",
        "container-probes",
        lambda o: predictor(o)["containers"][0].pop("readinessProbe"),
        ISVC,
        "has no readinessProbe",
        "spec.predictor.containers[0].readinessProbe",
    ),
    Case(
        "uid 0",
        "milestone3",
        "run-as-non-root",
        lambda o: container(o, "ocr-redis").setdefault("securityContext", {}).update(runAsUser=0),
        "Deployment/ocr-dev/ocr-redis",
        "runs as uid 0",
        "spec.template.spec.containers[0].securityContext.runAsUser",
    ),
    Case(
        "runAsNonRoot false",
        "milestone2",
        "run-as-non-root",
        lambda o: container(o, "ratelimit")["securityContext"].update(runAsNonRoot=False),
        "Deployment/ocr-ratelimit/ratelimit",
        "sets runAsNonRoot: false",
    ),
    Case(
        "root not excluded",
        "milestone1",
        "run-as-non-root",
        lambda o: [predictor(o)["containers"][0]["securityContext"].pop(k) for k in ("runAsNonRoot", "runAsUser")],
        ISVC,
        "may run as root",
        "spec.predictor.containers[0].securityContext",
    ),
    Case(
        "latest tag",
        "milestone2",
        "image-pinned",
        lambda o: container(o, "ratelimit").update(image="docker.io/envoyproxy/ratelimit:latest"),
        "Deployment/ocr-ratelimit/ratelimit",
        "floating tag 'latest'",
        "spec.template.spec.containers[0].image",
    ),
    Case(
        "untagged",
        "milestone3",
        "image-pinned",
        lambda o: container(o, "ocr-redis").update(image="docker.io/library/redis"),
        "Deployment/ocr-dev/ocr-redis",
        "untagged",
    ),
    Case(
        "branch tag",
        "milestone2",
        "image-pinned",
        lambda o: container(o, "ratelimit").update(image="docker.io/envoyproxy/ratelimit:master"),
        "Deployment/ocr-ratelimit/ratelimit",
        "floating tag 'master'",
    ),
    Case(
        "bad digest",
        "milestone2",
        "image-pinned",
        lambda o: container(o, "ratelimit").update(image="docker.io/envoyproxy/ratelimit@sha256:1234"),
        "Deployment/ocr-ratelimit/ratelimit",
        "malformed digest",
    ),
    Case(
        "local image pulled",
        "milestone1",
        "local-image-pull-policy",
        lambda o: predictor(o)["containers"][0].update(imagePullPolicy="Always"),
        ISVC,
        "imagePullPolicy 'Always'",
        "spec.predictor.containers[0].imagePullPolicy",
    ),
    # namespaces
    Case(
        "no namespace",
        "milestone1",
        "namespace-set",
        lambda o: the(o, "PrometheusRule", "ocr")["metadata"].pop("namespace"),
        "PrometheusRule/ocr",
        "is namespaced but has no namespace",
        "metadata.namespace",
    ),
    # autoscaling
    Case(
        "maxReplicas unset",
        "milestone1",
        "isvc-scalable",
        lambda o: predictor(o).pop("maxReplicas"),
        ISVC,
        "defaults to minReplicas",
        "spec.predictor.maxReplicas",
    ),
    Case(
        "max not above min",
        "milestone1",
        "isvc-scalable",
        lambda o: predictor(o).update(minReplicas=3, maxReplicas=3),
        ISVC,
        "is not above minReplicas",
        "spec.predictor.maxReplicas",
    ),
    Case(
        "not Standard mode",
        "milestone1",
        "isvc-scalable",
        lambda o: isvc_annotations(o).update({"serving.kserve.io/deploymentMode": "Knative"}),
        ISVC,
        "not Standard",
        "metadata.annotations[serving.kserve.io/deploymentMode]",
    ),
    Case(
        "not the hpa class",
        "milestone2",
        "isvc-scalable",
        lambda o: isvc_annotations(o).pop("serving.kserve.io/autoscalerClass"),
        ISVC,
        "not hpa",
        "metadata.annotations[serving.kserve.io/autoscalerClass]",
    ),
    Case(
        "no cpu request for the hpa",
        "milestone1",
        "isvc-scalable",
        lambda o: predictor(o)["containers"][0]["resources"]["requests"].pop("cpu"),
        ISVC,
        "requests no CPU",
        "spec.predictor.containers[0].resources.requests.cpu",
    ),
    Case(
        "scale-to-zero keeps a pod",
        "scale-to-zero",
        "isvc-scalable",
        lambda o: predictor(o).update(minReplicas=1),
        ISVC,
        "scale to zero needs 0",
        "spec.predictor.minReplicas",
    ),
    Case(
        "scale-to-zero on the hpa class",
        "scale-to-zero",
        "isvc-scalable",
        lambda o: isvc_annotations(o).update({"serving.kserve.io/autoscalerClass": "hpa"}),
        ISVC,
        "never scales to zero",
        "metadata.annotations[serving.kserve.io/autoscalerClass]",
    ),
    Case(
        "scale-to-zero on cpu",
        "scale-to-zero",
        "isvc-scalable",
        lambda o: predictor(o).update(scaleMetric="cpu"),
        ISVC,
        "cannot scale to zero",
        "spec.predictor.scaleMetric",
    ),
    Case(
        "scale-to-zero in Standard mode",
        "scale-to-zero",
        "isvc-scalable",
        lambda o: isvc_annotations(o).update({"serving.kserve.io/deploymentMode": "Standard"}),
        ISVC,
        "scale to zero needs Knative",
    ),
    Case(
        "target missing",
        "milestone3",
        "keda-target",
        lambda o: the(o, "ScaledObject", "ocr-worker")["spec"]["scaleTargetRef"].update(name="ocr-workers"),
        SCALED,
        "Deployment/ocr-workers is not in the render",
        "spec.scaleTargetRef",
    ),
    Case(
        "no ScaledObject",
        "full",
        "keda-target",
        lambda o: drop(o, "ScaledObject", "ocr-worker"),
        "(render)",
        "no ScaledObject",
    ),
    Case(
        "stream differs",
        "milestone3",
        "keda-stream",
        lambda o: set_env(container(o, "ocr-worker"), "OCR_JOBS_STREAM", "ocr:other"),
        SCALED,
        "the workers' OCR_JOBS_STREAM is 'ocr:other'",
        "spec.triggers[0].metadata.stream",
    ),
    Case(
        "group differs",
        "milestone3",
        "keda-stream",
        lambda o: trigger(o).update(consumerGroup="someone-else"),
        SCALED,
        "consumerGroup 'someone-else'",
        "spec.triggers[0].metadata.consumerGroup",
    ),
    Case(
        "cooldown shorter than the visibility timeout",
        "milestone3",
        "keda-cooldown",
        lambda o: the(o, "ScaledObject", "ocr-worker")["spec"].update(cooldownPeriod=30),
        SCALED,
        "cooldownPeriod 30s is not longer than the workers' visibility timeout 60s",
        "spec.cooldownPeriod",
    ),
    Case(
        "not lag mode",
        "milestone3",
        "keda-lag-mode",
        lambda o: trigger(o).pop("lagCount"),
        SCALED,
        "no lagCount",
        "spec.triggers[0].metadata.lagCount",
    ),
    Case(
        "address not qualified",
        "milestone3",
        "keda-redis-address",
        lambda o: trigger(o).update(address="ocr-redis:6379"),
        SCALED,
        "not namespace-qualified",
        "spec.triggers[0].metadata.address",
    ),
    Case(
        "address of another redis",
        "milestone3",
        "keda-redis-address",
        lambda o: trigger(o).update(address="ratelimit-redis.ocr-ratelimit.svc.cluster.local:6379"),
        SCALED,
        "is not the workers' OCR_REDIS_URL",
    ),
    Case(
        "grace period too short",
        "milestone3",
        "worker-grace-period",
        lambda o: pod(o, "ocr-worker").update(terminationGracePeriodSeconds=30),
        WORKER,
        "is not above the job timeout 30 s",
        "spec.template.spec.terminationGracePeriodSeconds",
    ),
    # the job Redis
    Case(
        "redis without a password",
        "milestone3",
        "redis-auth",
        lambda o: container(o, "ocr-redis").update(command=["redis-server", "--appendonly", "yes"]),
        REDIS,
        "runs without requirepass",
        "spec.template.spec.containers[0].command",
    ),
    Case(
        "redis password on the command line",
        "milestone3",
        "redis-auth",
        lambda o: container(o, "ocr-redis").update(command=["redis-server", "--requirepass", "$(REDISCLI_AUTH)"]),
        REDIS,
        "--requirepass puts the password on the command line",
    ),
    Case(
        "redis password written in the manifest",
        "milestone3",
        "redis-auth",
        lambda o: redis_script(o, "$REDISCLI_AUTH", "hunter2"),
        REDIS,
        "given a literal",
    ),
    Case(
        "redis password not from a Secret",
        "milestone3",
        "redis-auth",
        lambda o: env_var(container(o, "ocr-redis"), "REDISCLI_AUTH").update(valueFrom=None, value="hunter2"),
        REDIS,
        "is not set from a Secret",
        "spec.template.spec.containers[0].env",
    ),
    Case(
        "redis Secret missing",
        "full",
        "redis-auth",
        lambda o: drop(o, "Secret", "ocr-redis-auth"),
        REDIS,
        "Secret key ocr-dev/ocr-redis-auth/password is not in the render",
    ),
    Case(
        "redis probe does not log in",
        "milestone3",
        "redis-auth",
        probe_logs_in_with_another_variable,
        REDIS,
        "the readinessProbe cannot log in",
    ),
    Case(
        "redis probe ignores the answer",
        "milestone3",
        "redis-auth",
        lambda o: container(o, "ocr-redis")["livenessProbe"]["exec"].update(command=["redis-cli", "ping"]),
        REDIS,
        "the livenessProbe passes whatever Redis answers",
        "spec.template.spec.containers[0].livenessProbe.exec.command",
    ),
    Case(
        "redis without maxmemory",
        "milestone3",
        "redis-memory",
        lambda o: redis_script(o, " --maxmemory 256mb", ""),
        REDIS,
        "runs without maxmemory",
        "spec.template.spec.containers[0].command",
    ),
    Case(
        "redis evicting keys",
        "full",
        "redis-memory",
        lambda o: redis_script(o, "noeviction", "allkeys-lru"),
        REDIS,
        "maxmemory-policy allkeys-lru: the job Redis must run with noeviction",
    ),
    Case(
        "redis eviction policy left to the default",
        "milestone3",
        "redis-memory",
        lambda o: redis_script(o, " --maxmemory-policy noeviction", ""),
        REDIS,
        "no maxmemory-policy",
    ),
    Case(
        "redis limit without room above maxmemory",
        "milestone3",
        "redis-memory",
        lambda o: container(o, "ocr-redis")["resources"]["limits"].update(memory="300Mi"),
        REDIS,
        "memory limit 300Mi is under maxmemory 256 MiB plus room",
        "spec.template.spec.containers[0].resources.limits.memory",
    ),
    Case(
        "queue bytes not bounded",
        "milestone3",
        "redis-memory",
        lambda o: predictor(o)["containers"][0]["env"].remove(
            env_var(predictor(o)["containers"][0], "OCR_JOBS_QUEUE_MAX_BYTES")
        ),
        ISVC,
        "sets no literal OCR_JOBS_QUEUE_MAX_BYTES",
        "spec.predictor.containers[0].env",
    ),
    Case(
        "queue bytes fill the redis",
        "full",
        "redis-memory",
        lambda o: set_env(predictor(o)["containers"][0], "OCR_JOBS_QUEUE_MAX_BYTES", "268435456"),
        ISVC,
        "OCR_JOBS_QUEUE_MAX_BYTES 256 MiB is over half of the job Redis' maxmemory 256 MiB",
    ),
    Case(
        "workers without the password",
        "milestone3",
        "redis-auth-shared",
        lambda o: set_env(container(o, "ocr-worker"), "OCR_REDIS_URL", "redis://ocr-redis:6379/0"),
        WORKER,
        "connects without a password",
    ),
    Case(
        "password written into the URL",
        "full",
        "redis-auth-shared",
        lambda o: set_env(predictor(o)["containers"][0], "OCR_REDIS_URL", "redis://:hunter2@ocr-redis:6379/0"),
        ISVC,
        "has the password written into OCR_REDIS_URL",
    ),
    Case(
        "predictor reads another Secret",
        "milestone3",
        "redis-auth-shared",
        lambda o: env_var(predictor(o)["containers"][0], "OCR_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"].update(
            name="other-secret"
        ),
        ISVC,
        "OCR_REDIS_PASSWORD is not set from Secret key ocr-redis-auth/password",
    ),
    Case(
        "password defined after the URL",
        "milestone3",
        "redis-auth-shared",
        move_password_after_url,
        WORKER,
        "is defined after OCR_REDIS_URL, so $(OCR_REDIS_PASSWORD) is not expanded",
    ),
    Case(
        "KEDA without authentication",
        "milestone3",
        "redis-auth-shared",
        lambda o: the(o, "ScaledObject", "ocr-worker")["spec"]["triggers"][0].pop("authenticationRef"),
        SCALED,
        "KEDA would connect without the password",
        "spec.triggers[0].authenticationRef",
    ),
    Case(
        "KEDA reads another key",
        "full",
        "redis-auth-shared",
        lambda o: the(o, "TriggerAuthentication", "ocr-redis-auth")["spec"]["secretTargetRef"][0].update(key="pw"),
        "TriggerAuthentication/ocr-dev/ocr-redis-auth",
        "parameter password is ocr-redis-auth/pw, not Secret key ocr-redis-auth/password",
    ),
    Case(
        "redis not fenced",
        "milestone3",
        "redis-network-policy",
        lambda o: [drop(o, "NetworkPolicy", name) for name in ("ocr-redis", "ocr-redis-allow-keda")],
        REDIS,
        "no NetworkPolicy selects the job Redis' pods",
    ),
    Case(
        "KEDA fenced out",
        "full",
        "redis-network-policy",
        lambda o: drop(o, "NetworkPolicy", "ocr-redis-allow-keda"),
        REDIS,
        "no NetworkPolicy admits KEDA's operator",
    ),
    Case(
        "KEDA looked for in the wrong namespace",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o, "ocr-redis-allow-keda")["ingress"][0]["from"][0]["namespaceSelector"].update(
            matchLabels={"kubernetes.io/metadata.name": "kube-system"}
        ),
        "NetworkPolicy/ocr-dev/ocr-redis-allow-keda",
        "selects none of the job Redis' clients",
        "spec.ingress[0].from[0]",
    ),
    Case(
        "workers' label misspelt",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0]["from"][1]["podSelector"].update(
            matchLabels={"app.kubernetes.io/name": "ocr-workers"}
        ),
        REDIS,
        "no NetworkPolicy admits the workers",
    ),
    Case(
        "every peer admitted",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0].pop("from"),
        REDIS_FENCE,
        "without from admits every peer",
        "spec.ingress[0]",
    ),
    Case(
        "every port opened",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0].pop("ports"),
        REDIS_FENCE,
        "without ports opens every port",
    ),
    Case(
        "another port opened",
        "full",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0]["ports"].append({"protocol": "TCP", "port": 16379}),
        REDIS_FENCE,
        "admits port 16379",
        "spec.ingress[0].ports[1]",
    ),
    Case(
        "a whole namespace admitted",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0]["from"].append({"namespaceSelector": {}}),
        REDIS_FENCE,
        "admits every pod of the selected namespaces",
    ),
    Case(
        "an address block admitted",
        "milestone3",
        "redis-network-policy",
        lambda o: redis_policy(o)["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        REDIS_FENCE,
        "admits an address block",
    ),
    # mesh
    Case(
        "mesh-wide PERMISSIVE",
        "milestone2",
        "mtls-strict",
        lambda o: the(o, "PeerAuthentication", "default")["spec"]["mtls"].update(mode="PERMISSIVE"),
        "PeerAuthentication/istio-system/default",
        "not STRICT",
        "spec.mtls.mode",
    ),
    Case(
        "no mesh-wide policy",
        "milestone3",
        "mtls-strict",
        lambda o: drop(o, "PeerAuthentication", "default"),
        "(render)",
        "no mesh-wide PeerAuthentication",
    ),
    Case(
        "a workload relaxed",
        "milestone3",
        "mtls-strict",
        lambda o: the(o, "PeerAuthentication", "ocr-redis")["spec"]["mtls"].update(mode="DISABLE"),
        "PeerAuthentication/ocr-dev/ocr-redis",
        "relaxes mTLS for whole workloads",
    ),
    Case(
        "no deny-all",
        "milestone2",
        "deny-all",
        lambda o: drop(o, "AuthorizationPolicy", "deny-all", "ocr-ratelimit"),
        "Namespace/ocr-ratelimit",
        "no deny-all AuthorizationPolicy",
    ),
    Case(
        "deny-all with rules",
        "milestone3",
        "deny-all",
        lambda o: [p.update(spec={"rules": [{}]}) for p in o if p["metadata"]["name"] == "deny-all"],
        "Namespace/ocr-dev",
        "no deny-all AuthorizationPolicy",
    ),
    Case(
        "namespace not injected",
        "milestone2",
        "sidecar-injection",
        lambda o: the(o, "Namespace", "ocr-dev")["metadata"]["labels"].pop("istio-injection"),
        "Namespace/ocr-dev",
        "no istio-injection: enabled label",
    ),
    Case(
        "pod opts out",
        "milestone3",
        "sidecar-injection",
        lambda o: the(o, "Deployment", "ocr-worker")["spec"]["template"]["metadata"]["annotations"].update(
            {"sidecar.istio.io/inject": "false"}
        ),
        WORKER,
        "opt out of sidecar injection",
        "spec.template.metadata.annotations[sidecar.istio.io/inject]",
    ),
    Case(
        "the gateway's key check names another provider",
        "milestone2",
        "api-key-required",
        lambda o: api_key_policy(o)["provider"].update(name="other"),
        API_KEY_POLICY,
        "is not the API-key authorizer istiod knows (ocr-api-key)",
        "spec.provider.name",
    ),
    Case(
        "the key check only on some paths",
        "full",
        "api-key-required",
        lambda o: api_key_policy(o).update(rules=[{"to": [{"operation": {"paths": ["/predict"]}}]}]),
        API_KEY_POLICY,
        "requests outside its rules reach the service unchecked",
        "spec.rules",
    ),
    Case(
        "no api key policy",
        "full",
        "api-key-required",
        lambda o: drop(o, "AuthorizationPolicy", "ocr-require-api-key"),
        "(render)",
        "no CUSTOM AuthorizationPolicy in istio-system",
    ),
    # no API key in any configuration
    Case(
        "keys listed in a gateway policy",
        "milestone2",
        "api-keys-hashed-only",
        match_keys_in_the_policy,
        API_KEY_POLICY,
        "condition lists keys in the policy",
        "spec.rules[0].when[0]",
    ),
    Case(
        "a route matches a key",
        "full",
        "api-keys-hashed-only",
        lambda o: gateway_routes(o)[0].update(match=[{"headers": {"X-API-Key": {"exact": "k1"}}}]),
        GATEWAY_ROUTES,
        "a route matches on x-api-key",
        "spec.http[0].match[0].headers",
    ),
    Case(
        "the rate limit counts by the key",
        "milestone2",
        "api-keys-hashed-only",
        lambda o: rate_limit_action(o).update(header_name="x-api-key"),
        RATELIMIT_ACTIONS,
        "the key would reach the rate limit service",
        "spec.configPatches[0].patch.value.rate_limits[0].actions[0].request_headers.header_name",
    ),
    Case(
        "a key in a ConfigMap",
        "milestone2",
        "api-keys-hashed-only",
        lambda o: o.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "keys", "namespace": "ocr-dev"},
                "data": {"OCR_API_KEY_PRIMARY": "Zq3kV0m2_rT8-xY1bN4cW7eH9jL5pS6uA0dF2gK3hMq"},
            }
        ),
        "ConfigMap/ocr-dev/keys",
        "shaped like a generated API key outside a Secret",
        "data.OCR_API_KEY_PRIMARY",
    ),
    Case(
        "a key in an environment variable",
        "full",
        "api-keys-hashed-only",
        lambda o: authz_pod(o)["containers"][0]["env"].append(
            {"name": "OCR_API_KEY", "value": "Zq3kV0m2_rT8-xY1bN4cW7eH9jL5pS6uA0dF2gK3hMq"}
        ),
        AUTHZ,
        "shaped like a generated API key",
        "spec.template.spec.containers[0].env[5].value",
    ),
    # the authorizer wired in
    Case(
        "no authorizer Service",
        "milestone2",
        "authz-wiring",
        lambda o: drop(o, "Service", "ocr-authz"),
        "(render)",
        "no Service ocr-dev/ocr-authz",
    ),
    Case(
        "the Service on another port",
        "full",
        "authz-wiring",
        lambda o: the(o, "Service", "ocr-authz")["spec"]["ports"][0].update(port=9000),
        "Service/ocr-dev/ocr-authz",
        "no port 8080, the provider's",
    ),
    Case(
        "one authorizer",
        "milestone2",
        "authz-wiring",
        lambda o: the(o, "Deployment", "ocr-authz")["spec"].update(replicas=1),
        AUTHZ,
        "one pod down and every request is refused",
        "spec.replicas",
    ),
    Case(
        "no disruption budget",
        "milestone2",
        "authz-wiring",
        lambda o: drop(o, "PodDisruptionBudget", "ocr-authz"),
        AUTHZ,
        "no PodDisruptionBudget",
    ),
    Case(
        "another program",
        "milestone2",
        "authz-wiring",
        lambda o: authz_pod(o)["containers"][0].update(command=["python", "-m", "service"]),
        AUTHZ,
        "runs no `python -m service.authz`",
    ),
    Case(
        "no hashes mounted",
        "milestone3",
        "authz-wiring",
        lambda o: authz_pod(o)["volumes"][0]["secret"].update(secretName="other"),
        AUTHZ,
        "mounts no Secret ocr-api-key-hashes",
    ),
    Case(
        "deny-all refuses the gateway",
        "milestone2",
        "authz-wiring",
        lambda o: drop(o, "AuthorizationPolicy", "ocr-authz-allow-ingressgateway"),
        "Namespace/ocr-dev",
        "no ALLOW AuthorizationPolicy selects the authorizer's pods",
    ),
    Case(
        "the predictor may ask too",
        "milestone2",
        "authz-wiring",
        lambda o: authz_allow(o)["from"][0]["source"]["principals"].append("cluster.local/ns/ocr-dev/sa/ocr-predictor"),
        AUTHZ_ALLOW,
        "admits more than the ingress gateway",
        "spec.rules[0].from",
    ),
    Case(
        "the health port allowed too",
        "milestone2",
        "authz-wiring",
        lambda o: authz_allow(o)["to"][0]["operation"]["ports"].append("8081"),
        AUTHZ_ALLOW,
        "not the check port 8080 alone",
        "spec.rules[0].to",
    ),
    Case(
        "no fence",
        "full",
        "authz-wiring",
        lambda o: drop(o, "NetworkPolicy", "ocr-authz"),
        "Namespace/ocr-dev",
        "no NetworkPolicy selects the authorizer's pods",
    ),
    Case(
        "the fence admits the whole namespace",
        "milestone2",
        "authz-wiring",
        lambda o: authz_fence(o)["from"][0].pop("podSelector"),
        "NetworkPolicy/ocr-dev/ocr-authz",
        "admits more than the ingress gateway's pods",
        "spec.ingress[0]",
    ),
    # the tenant from the authorizer
    Case(
        "a route sets the tenant",
        "milestone2",
        "tenant-from-authorizer",
        lambda o: gateway_routes(o)[0].update(headers={"request": {"set": {"X-Tenant-ID": "team-a"}}}),
        GATEWAY_ROUTES,
        "replaces x-tenant-id, which the API-key authorizer sets",
        "spec.http[0].headers.request.set",
    ),
    Case(
        "a route removes the tenant",
        "full",
        "tenant-from-authorizer",
        lambda o: gateway_routes(o)[0].update(headers={"request": {"remove": ["x-tenant-id"]}}),
        GATEWAY_ROUTES,
        "removes x-tenant-id",
        "spec.http[0].headers.request.remove",
    ),
    Case(
        "a destination appends a key id",
        "milestone2",
        "tenant-from-authorizer",
        lambda o: gateway_routes(o)[0]["route"][0].update(headers={"request": {"add": {"x-api-key-id": "x"}}}),
        GATEWAY_ROUTES,
        "appends to x-api-key-id",
        "spec.http[0].route[0].headers.request.add",
    ),
    # rate limit
    Case(
        "100 per second",
        "milestone2",
        "ratelimit-per-key",
        lambda o: ratelimit_config(o, RATELIMIT_CONFIG.replace("10}", "100}")),
        "ConfigMap/ocr-ratelimit/ratelimit-config",
        "not 10 per second",
    ),
    Case(
        "per minute",
        "milestone2",
        "ratelimit-per-key",
        lambda o: ratelimit_config(o, RATELIMIT_CONFIG.replace("second", "minute")),
        "ConfigMap/ocr-ratelimit/ratelimit-config",
        "10 per 'minute'",
    ),
    Case(
        "one key only",
        "milestone2",
        "ratelimit-per-key",
        lambda o: ratelimit_config(o, RATELIMIT_CONFIG.replace("key: api_key", "key: api_key\n    value: k1")),
        "ConfigMap/ocr-ratelimit/ratelimit-config",
        "limits that one key, not each key",
        "data.config.yaml.descriptors[0].value",
    ),
    Case(
        "limits another descriptor",
        "milestone2",
        "ratelimit-per-key",
        lambda o: ratelimit_config(o, RATELIMIT_CONFIG.replace("api_key", "remote_address")),
        "ConfigMap/ocr-ratelimit/ratelimit-config",
        "no descriptor for the key the gateway sends",
    ),
    Case(
        "domain differs",
        "milestone2",
        "ratelimit-wiring",
        lambda o: ratelimit_filter(o).update(domain="other"),
        RATELIMIT_FILTER,
        "domain 'other' matches no ratelimit configuration",
    ),
    Case(
        "wrong port",
        "milestone2",
        "ratelimit-wiring",
        lambda o: ratelimit_filter(o)["rate_limit_service"]["grpc_service"]["envoy_grpc"].update(
            cluster_name="outbound|8080||ratelimit.ocr-ratelimit.svc.cluster.local"
        ),
        RATELIMIT_FILTER,
        "not its gRPC port 8081",
    ),
    Case(
        "service has no grpc port",
        "milestone2",
        "ratelimit-wiring",
        lambda o: the(o, "Service", "ratelimit")["spec"]["ports"].pop(0),
        RATELIMIT_FILTER,
        "no Service ocr-ratelimit/ratelimit with port 8081",
    ),
    Case(
        "no x-ratelimit headers",
        "milestone2",
        "ratelimit-wiring",
        lambda o: ratelimit_filter(o).pop("enable_x_ratelimit_headers"),
        RATELIMIT_FILTER,
        "not DRAFT_VERSION_03",
    ),
    Case(
        "descriptor key differs",
        "milestone2",
        "ratelimit-wiring",
        lambda o: rate_limit_action(o).update(descriptor_key="apikey"),
        "EnvoyFilter/istio-system/ocr-ratelimit-actions",
        "'apikey' is limited by no ratelimit configuration",
    ),
    Case(
        "another header counted",
        "milestone2",
        "ratelimit-wiring",
        lambda o: rate_limit_action(o).update(header_name=":path"),
        "(render)",
        "sends the x-api-key-id header",
    ),
    Case(
        "rate limit on one host",
        "milestone2",
        "ratelimit-wiring",
        lambda o: rate_limits_patch(o)["match"].update(
            routeConfiguration={"vhost": {"name": "ocr-ocr-dev.example.com:80", "route": {"action": "ANY"}}}
        ),
        "EnvoyFilter/istio-system/ocr-ratelimit-actions",
        "only for virtual host name 'ocr-ocr-dev.example.com:80': requests to any other host",
        "spec.configPatches[0].match.routeConfiguration.vhost.name",
    ),
    Case(
        "rate limit on one domain",
        "full",
        "ratelimit-wiring",
        lambda o: rate_limits_patch(o)["match"].update(
            routeConfiguration={"vhost": {"domainName": "ocr-ocr-dev.example.com"}}
        ),
        "EnvoyFilter/istio-system/ocr-ratelimit-actions",
        "only for virtual host domainName",
    ),
    Case(
        "rate limit on one port",
        "milestone2",
        "ratelimit-wiring",
        lambda o: rate_limits_patch(o)["match"].update(routeConfiguration={"portNumber": 80}),
        "EnvoyFilter/istio-system/ocr-ratelimit-actions",
        "only for route configuration portNumber 80",
        "spec.configPatches[0].match.routeConfiguration.portNumber",
    ),
    Case(
        "rate limit on routes only",
        "milestone2",
        "ratelimit-wiring",
        lambda o: rate_limits_patch(o).update(applyTo="HTTP_ROUTE"),
        "EnvoyFilter/istio-system/ocr-ratelimit-actions",
        "not every VIRTUAL_HOST",
        "spec.configPatches[0].applyTo",
    ),
    Case(
        "no filter",
        "milestone3",
        "ratelimit-wiring",
        lambda o: drop(o, "EnvoyFilter", "ocr-ratelimit-filter"),
        "(render)",
        "no envoy.filters.http.ratelimit HTTP filter",
    ),
    # rollout
    Case(
        "readiness probe removed",
        "milestone1",
        "rollout-readiness",
        lambda o: predictor(o)["containers"][0].pop("readinessProbe"),
        ISVC,
        "has no readinessProbe",
        "spec.predictor.containers[0].readinessProbe",
    ),
    Case(
        "readiness probed on liveness",
        "full",
        "rollout-readiness",
        lambda o: predictor(o)["containers"][0]["readinessProbe"]["httpGet"].update(path="/healthz"),
        ISVC,
        "probes readiness on '/healthz'",
        "spec.predictor.containers[0].readinessProbe.httpGet.path",
    ),
    Case(
        "no preStop",
        "milestone1",
        "rollout-prestop",
        lambda o: predictor(o)["containers"][0].pop("lifecycle"),
        ISVC,
        "has no preStop pause",
        "spec.predictor.containers[0].lifecycle.preStop",
    ),
    Case(
        "preStop shorter than propagation",
        "full",
        "rollout-prestop",
        lambda o: predictor(o)["containers"][0]["lifecycle"].update(preStop={"exec": {"command": ["sleep", "3"]}}),
        ISVC,
        "pauses 3 s in preStop",
        "spec.predictor.containers[0].lifecycle.preStop",
    ),
    Case(
        "grace period under the longest request",
        "milestone1",
        "rollout-grace-period",
        lambda o: predictor(o).update(terminationGracePeriodSeconds=45),
        ISVC,
        "terminationGracePeriodSeconds 45 is not above preStop 15 s + drain 5 s + request timeout 30 s = 50 s",
        "spec.predictor.terminationGracePeriodSeconds",
    ),
    Case(
        "grace period unset",
        "full",
        "rollout-grace-period",
        lambda o: predictor(o).pop("terminationGracePeriodSeconds"),
        ISVC,
        "unset (30)",
        "spec.predictor.terminationGracePeriodSeconds",
    ),
    Case(
        "no deployment strategy",
        "milestone1",
        "rollout-max-unavailable",
        lambda o: predictor(o).pop("deploymentStrategy"),
        ISVC,
        "no deploymentStrategy",
        "spec.predictor.deploymentStrategy",
    ),
    Case(
        "a quarter unavailable",
        "full",
        "rollout-max-unavailable",
        lambda o: predictor(o)["deploymentStrategy"]["rollingUpdate"].update(maxUnavailable="25%"),
        ISVC,
        "maxUnavailable is '25%', not 0",
        "spec.predictor.deploymentStrategy.rollingUpdate.maxUnavailable",
    ),
    Case(
        "recreate",
        "milestone2",
        "rollout-max-unavailable",
        lambda o: predictor(o).update(deploymentStrategy={"type": "Recreate"}),
        ISVC,
        "strategy 'Recreate' stops every old pod",
        "spec.predictor.deploymentStrategy.type",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_rule_catches_its_break(case: Case, rendered: Rendered) -> None:
    objects = rendered(case.overlay)
    assert run(objects, case.overlay, case.rule) == [], "the unbroken overlay must pass"
    case.breaks(objects)
    findings = run(objects, case.overlay, case.rule)
    # startswith: generated ConfigMaps carry a content hash after their name.
    matching = [f for f in findings if f.obj.startswith(case.obj) and case.message in f.message]
    assert matching, f"expected {case.obj}: {case.message!r}, got {[str(f) for f in findings]}"
    assert all(f.rule == case.rule for f in findings)
    if case.path is not None:
        assert [f.path for f in matching] == [case.path]


def test_every_rule_is_shown_to_fail() -> None:
    assert {case.rule for case in CASES} == {entry.name for entry in policies.RULES}


def test_a_finding_reads_object_rule_path_message(rendered: Rendered) -> None:
    objects = rendered("milestone1")
    predictor(objects)["containers"][0]["resources"]["limits"].pop("memory")
    assert [str(f) for f in run(objects, "milestone1", "container-resources")] == [
        "InferenceService/ocr-dev/ocr: [container-resources] at spec.predictor.containers[0].resources.limits.memory:"
        " container kserve-container sets no limits.memory"
    ]


def test_a_promise_dropped_from_an_overlay_is_caught(rendered: Rendered) -> None:
    """milestone2 promises the mesh: losing the istio component's objects fails, it does not skip."""
    objects = [o for o in rendered("milestone2") if not o["apiVersion"].startswith("security.istio.io/")]
    rules = {f.rule for f in policies.check(policies.Context(objects, OVERLAYS["milestone2"], builtin_scope))}
    assert {"mtls-strict", "deny-all", "api-key-required", "authz-wiring"} <= rules


def test_rules_outside_the_profile_do_not_run(rendered: Rendered) -> None:
    objects = rendered("milestone1")
    assert policies.check(policies.Context(objects, Profile.shown(), builtin_scope), only=["deny-all"]) == []


def test_an_unknown_rule_name_is_refused(rendered: Rendered) -> None:
    with pytest.raises(ValueError, match="unknown rules: no-such-rule"):
        policies.check(policies.Context(rendered("milestone1"), Profile.shown(), builtin_scope), only=["no-such-rule"])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_declared_profiles_match_what_the_overlays_render(overlay: str, rendered: Rendered) -> None:
    assert infer_profile(rendered(overlay)).features() == OVERLAYS[overlay].features()


# --- tenant-from-authorizer and api-keys-hashed-only, beyond breaking them ----------------------------------


def test_the_provider_copies_the_tenant_and_key_id(monkeypatch: pytest.MonkeyPatch, rendered: Rendered) -> None:
    from harness.provisioning import extauthz

    http = dict(extauthz.PROVIDER["envoyExtAuthzHttp"], headersToUpstreamOnAllow=["x-tenant-id"])
    monkeypatch.setitem(extauthz.PROVIDER, "envoyExtAuthzHttp", http)
    findings = run(rendered("milestone2"), "milestone2", "tenant-from-authorizer")
    assert [f.obj for f in findings] == ["(istiod meshConfig)"]
    assert findings[0].message.startswith("the provider ocr-api-key does not copy x-api-key-id from the authorizer")


def test_other_headers_and_sidecar_routes_are_free(rendered: Rendered) -> None:
    objects = rendered("milestone2")
    gateway_routes(objects)[0]["headers"] = {"request": {"set": {"x-forwarded-proto": "https"}, "remove": ["x-b3"]}}
    assert run(objects, "milestone2", "tenant-from-authorizer") == []
    the(objects, "VirtualService", "ocr")["spec"]["gateways"] = ["mesh"]
    gateway_routes(objects)[0]["headers"] = {"request": {"set": {"x-tenant-id": "internal"}}}
    assert run(objects, "milestone2", "tenant-from-authorizer") == []


def test_findings_never_name_a_key(rendered: Rendered) -> None:
    objects = rendered("milestone2")
    secret = "Zq3kV0m2_rT8-xY1bN4cW7eH9jL5pS6uA0dF2gK3hMq"
    gateway_routes(objects)[0]["match"] = [{"headers": {"x-api-key": {"exact": secret}}}]
    the(objects, "Gateway", "ocr-gateway")["metadata"]["annotations"] = {"note": secret}
    findings = [str(f) for f in run(objects, "milestone2", "api-keys-hashed-only")]
    assert len(findings) == 3 and not [f for f in findings if secret in f]


def test_a_secret_may_hold_key_shaped_values(rendered: Rendered) -> None:
    objects = rendered("milestone2")
    the(objects, "Secret", "ocr-api-key-hashes")["stringData"]["other"] = "Zq3kV0m2_rT8-xY1bN4cW7eH9jL5pS6uA0dF2gK3hMq"
    assert run(objects, "milestone2", "api-keys-hashed-only") == []


# --- redis-memory, beyond breaking it ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256mb", 256 * 2**20), ("256MB", 256 * 2**20), ("1gb", 2**30), ("100m", 10**8), ("4096", 4096),
     ("1k", 1000), ("'2kb'", 2048), ("lots", None), ("1tb", None)],
)  # fmt: skip
def test_redis_sizes_read_as_redis_reads_them(text: str, expected: int | None) -> None:
    assert redis.redis_bytes(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("500M", 5 * 10**8), ("1.5Gi", 3 * 2**29), (1048576, 2**20),
     ("1e3", None)],
)  # fmt: skip
def test_kubernetes_memory_quantities(value: object, expected: int | None) -> None:
    assert redis.kube_bytes(value) == expected


def test_the_queue_bound_in_the_manifests_is_the_services_default(rendered: Rendered) -> None:
    """The predictor sets OCR_JOBS_QUEUE_MAX_BYTES explicitly; it is the service's own default, so a local run
    (which leaves it unset) and a cluster bound the queue alike."""
    from service.settings import ServiceSettings

    value = env_var(predictor(rendered("milestone3"))["containers"][0], "OCR_JOBS_QUEUE_MAX_BYTES")["value"]
    assert int(value) == ServiceSettings.model_fields["jobs_queue_max_bytes"].default
