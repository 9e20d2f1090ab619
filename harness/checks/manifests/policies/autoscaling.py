"""Rules that prove scaling can happen: the predictor's HPA or Knative settings, and KEDA on the workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Container, Finding, Obj, containers, dig, find, finding

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
KNATIVE_METRICS = frozenset({"concurrency", "rps"})
RENDER = "(render)"  # stands for the whole render when the object a rule needs is missing
# The service's defaults (service/settings.py) where the manifests leave a setting unset.
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_GRACE_PERIOD_S = 30
WORKER_MODULE = "service.jobs.worker"


def _annotation_path(name: str) -> str:
    return f"metadata.annotations[{name}]"


@rule("isvc-scalable")
def isvc_scalable(ctx: Context) -> Iterator[Finding]:
    """The InferenceService can scale: Standard mode with a CPU HPA (min < max, CPU requests), or Knative
    mode able to reach zero in the scale-to-zero overlay."""
    services = find(ctx.objects, "InferenceService")
    if not services:
        yield finding(RENDER, "isvc-scalable", "no InferenceService in the render")
    for isvc in services:
        yield from (_knative(isvc) if ctx.profile.knative else _standard(isvc))


def _standard(isvc: Obj) -> Iterator[Finding]:
    annotations = dig(isvc, "metadata", "annotations") or {}
    predictor = dig(isvc, "spec", "predictor") or {}
    if annotations.get(DEPLOYMENT_MODE) != "Standard":
        yield finding(
            isvc,
            "isvc-scalable",
            f"deployment mode is {annotations.get(DEPLOYMENT_MODE)!r}, not Standard (the chart default is Knative)",
            _annotation_path(DEPLOYMENT_MODE),
        )
    if annotations.get(AUTOSCALER_CLASS) != "hpa":
        yield finding(
            isvc,
            "isvc-scalable",
            f"autoscaler class is {annotations.get(AUTOSCALER_CLASS)!r}, not hpa",
            _annotation_path(AUTOSCALER_CLASS),
        )
    low, high = predictor.get("minReplicas", 1), predictor.get("maxReplicas")
    if not isinstance(low, int) or low < 1:
        yield finding(
            isvc, "isvc-scalable", f"minReplicas {low!r}: an HPA keeps at least 1", "spec.predictor.minReplicas"
        )
    if high is None:
        yield finding(
            isvc,
            "isvc-scalable",
            "maxReplicas unset: it defaults to minReplicas, so the HPA can never add a pod",
            "spec.predictor.maxReplicas",
        )
    elif not isinstance(high, int) or not isinstance(low, int) or high <= low:
        yield finding(
            isvc,
            "isvc-scalable",
            f"maxReplicas {high!r} is not above minReplicas {low!r}: nothing to scale",
            "spec.predictor.maxReplicas",
        )
    metric = predictor.get("scaleMetric", "cpu")
    if metric == "cpu":
        target = predictor.get("scaleTarget")
        if target is not None and not (isinstance(target, int) and 0 < target <= 100):
            yield finding(
                isvc, "isvc-scalable", f"scaleTarget {target!r} is not a CPU percentage", "spec.predictor.scaleTarget"
            )
        for container in containers(isvc):
            if not container.init and not dig(container.spec, "resources", "requests", "cpu"):
                yield finding(
                    isvc,
                    "isvc-scalable",
                    f"container {container.name} requests no CPU: a CPU HPA cannot compute utilisation",
                    [*container.path, "resources", "requests", "cpu"],
                )


def _knative(isvc: Obj) -> Iterator[Finding]:
    annotations = dig(isvc, "metadata", "annotations") or {}
    predictor = dig(isvc, "spec", "predictor") or {}
    if annotations.get(DEPLOYMENT_MODE) != "Knative":
        yield finding(
            isvc,
            "isvc-scalable",
            f"deployment mode is {annotations.get(DEPLOYMENT_MODE)!r}: scale to zero needs Knative",
            _annotation_path(DEPLOYMENT_MODE),
        )
    if annotations.get(AUTOSCALER_CLASS) == "hpa":
        yield finding(
            isvc,
            "isvc-scalable",
            "autoscaler class hpa makes Knative use its HPA class, which never scales to zero",
            _annotation_path(AUTOSCALER_CLASS),
        )
    if predictor.get("minReplicas") != 0:
        yield finding(
            isvc,
            "isvc-scalable",
            f"minReplicas is {predictor.get('minReplicas')!r}: scale to zero needs 0 (KServe defaults it to 1)",
            "spec.predictor.minReplicas",
        )
    metric = predictor.get("scaleMetric")
    if metric is not None and metric not in KNATIVE_METRICS:
        yield finding(
            isvc,
            "isvc-scalable",
            f"scaleMetric {metric!r} needs Knative's HPA class, which cannot scale to zero (use concurrency or rps)",
            "spec.predictor.scaleMetric",
        )


def _scale_target(ctx: Context, scaled: Obj) -> Obj | None:
    ref = dig(scaled, "spec", "scaleTargetRef") or {}
    candidates = find(ctx.objects, ref.get("kind", "Deployment"), ref.get("name"), dig(scaled, "metadata", "namespace"))
    wanted = ref.get("apiVersion", "apps/v1")
    return next((obj for obj in candidates if obj.get("apiVersion") == wanted), None)


def redis_triggers(scaled: Obj) -> list[tuple[int, Obj]]:
    triggers = dig(scaled, "spec", "triggers") or []
    return [(i, t) for i, t in enumerate(triggers) if isinstance(t, dict) and t.get("type") == "redis-streams"]


def _env(target: Obj, name: str) -> str | None:
    values = [c.env(name) for c in containers(target)]
    return next((v for v in values if v is not None), None)


@rule("keda-target", when=lambda p: p.keda)
def keda_target(ctx: Context) -> Iterator[Finding]:
    """Every ScaledObject scales an object that the render contains (same namespace, kind and name)."""
    scaled_objects = find(ctx.objects, "ScaledObject")
    if not scaled_objects:
        yield finding(RENDER, "keda-target", "no ScaledObject in the render")
    for scaled in scaled_objects:
        if _scale_target(ctx, scaled) is None:
            ref = dig(scaled, "spec", "scaleTargetRef") or {}
            yield finding(
                scaled,
                "keda-target",
                f"scaleTargetRef {ref.get('kind', 'Deployment')}/{ref.get('name')} is not in the render",
                "spec.scaleTargetRef",
            )


@rule("keda-stream", when=lambda p: p.keda)
def keda_stream(ctx: Context) -> Iterator[Finding]:
    """The redis-streams trigger watches the stream and group the workers consume (OCR_JOBS_STREAM/GROUP)."""
    for scaled in find(ctx.objects, "ScaledObject"):
        target = _scale_target(ctx, scaled)
        triggers = redis_triggers(scaled)
        if not triggers:
            yield finding(scaled, "keda-stream", "no redis-streams trigger", "spec.triggers")
        if target is None:
            continue
        for index, trigger in triggers:
            metadata = trigger.get("metadata") or {}
            for field, env in (("stream", "OCR_JOBS_STREAM"), ("consumerGroup", "OCR_JOBS_GROUP")):
                expected = _env(target, env)
                if expected is None:
                    yield finding(
                        scaled,
                        "keda-stream",
                        f"target {target['kind']}/{target['metadata']['name']} sets no {env} to compare {field} with",
                        ["spec", "triggers", index, "metadata", field],
                    )
                elif metadata.get(field) != expected:
                    yield finding(
                        scaled,
                        "keda-stream",
                        f"{field} {metadata.get(field)!r} but the workers' {env} is {expected!r}",
                        ["spec", "triggers", index, "metadata", field],
                    )


@rule("keda-lag-mode", when=lambda p: p.keda)
def keda_lag_mode(ctx: Context) -> Iterator[Finding]:
    """The redis-streams trigger is in lag mode (consumerGroup + lagCount), the mode that can reach zero."""
    for scaled in find(ctx.objects, "ScaledObject"):
        for index, trigger in redis_triggers(scaled):
            metadata = trigger.get("metadata") or {}
            for field in ("consumerGroup", "lagCount"):
                if not metadata.get(field):
                    yield finding(
                        scaled,
                        "keda-lag-mode",
                        f"no {field}: only lag mode (consumerGroup with lagCount) can scale to zero",
                        ["spec", "triggers", index, "metadata", field],
                    )


def _fqdn(host: str, namespace: str) -> str:
    """A Service host as seen from another namespace: name -> name.namespace.svc.cluster.local."""
    labels = host.split(".")
    if len(labels) == 1:
        labels += [namespace]
    if len(labels) == 2:
        labels += ["svc"]
    if len(labels) == 3 and labels[2] == "svc":
        labels += ["cluster", "local"]
    return ".".join(labels)


DEFAULT_VISIBILITY_TIMEOUT_S = 60.0


@rule("keda-cooldown", when=lambda p: p.keda)
def keda_cooldown(ctx: Context) -> Iterator[Finding]:
    """KEDA keeps a worker for longer than the visibility timeout after the lag reaches zero, so a job left
    pending by a worker that died is claimed before the workers scale to zero (lag does not count it)."""
    for scaled in find(ctx.objects, "ScaledObject"):
        target = _scale_target(ctx, scaled)
        if target is None:
            continue
        visibility = float(_env(target, "OCR_VISIBILITY_TIMEOUT_S") or DEFAULT_VISIBILITY_TIMEOUT_S)
        cooldown = float(dig(scaled, "spec", "cooldownPeriod") or 300)
        if cooldown <= visibility:
            yield finding(
                scaled,
                "keda-cooldown",
                f"cooldownPeriod {cooldown:g}s is not longer than the workers' visibility timeout {visibility:g}s:"
                " a job pending on a dead worker would be stranded at zero replicas",
                "spec.cooldownPeriod",
            )


@rule("keda-redis-address", when=lambda p: p.keda)
def keda_redis_address(ctx: Context) -> Iterator[Finding]:
    """The trigger reads the Redis the workers use (OCR_REDIS_URL), by a name that resolves from KEDA's own
    namespace."""
    for scaled in find(ctx.objects, "ScaledObject"):
        target = _scale_target(ctx, scaled)
        url = _env(target, "OCR_REDIS_URL") if target else None
        namespace = dig(scaled, "metadata", "namespace") or ""
        for index, trigger in redis_triggers(scaled):
            path: list[str | int] = ["spec", "triggers", index, "metadata", "address"]
            address = str((trigger.get("metadata") or {}).get("address") or "")
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                yield finding(scaled, "keda-redis-address", f"address {address!r} is not host:port", path)
                continue
            if "." not in host:
                yield finding(
                    scaled,
                    "keda-redis-address",
                    f"address host {host!r} is not namespace-qualified: KEDA resolves it in its own namespace",
                    path,
                )
            if url is None:
                continue
            parts = urlsplit(url)
            if (_fqdn(host, namespace), int(port)) != (_fqdn(parts.hostname or "", namespace), parts.port or 6379):
                yield finding(
                    scaled, "keda-redis-address", f"address {address!r} is not the workers' OCR_REDIS_URL {url!r}", path
                )


def worker_deployments(objects: Sequence[Obj]) -> list[tuple[Obj, list[Container]]]:
    out = []
    for deployment in find(objects, "Deployment"):
        running = [c for c in containers(deployment) if WORKER_MODULE in (c.spec.get("command") or [])]
        if running:
            out.append((deployment, running))
    return out


@rule("worker-grace-period", when=lambda p: p.jobs)
def worker_grace_period(ctx: Context) -> Iterator[Finding]:
    """A worker told to stop may finish its job: terminationGracePeriodSeconds above OCR_REQUEST_TIMEOUT_S."""
    workers = worker_deployments(ctx.objects)
    if not workers:
        yield finding(RENDER, "worker-grace-period", f"no Deployment runs {WORKER_MODULE}")
    for deployment, running in workers:
        grace = dig(deployment, "spec", "template", "spec", "terminationGracePeriodSeconds")
        for container in running:
            raw = container.env("OCR_REQUEST_TIMEOUT_S")
            timeout = float(raw) if raw else DEFAULT_REQUEST_TIMEOUT_S
            if (grace if isinstance(grace, int) else DEFAULT_GRACE_PERIOD_S) <= timeout:
                shown = grace if grace is not None else f"unset ({DEFAULT_GRACE_PERIOD_S})"
                yield finding(
                    deployment,
                    "worker-grace-period",
                    f"terminationGracePeriodSeconds {shown} is not above the job timeout {timeout:g} s of container "
                    f"{container.name}",
                    "spec.template.spec.terminationGracePeriodSeconds",
                )
