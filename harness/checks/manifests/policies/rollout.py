"""Rules that make a rollout (or a scale-in) lose no request, on every InferenceService in Standard mode.

An old pod leaves in this order: it is removed from the endpoints while its ``preStop`` pause runs (long
enough for kube-proxy and the Istio gateways to stop sending to it), then SIGTERM turns its readiness 503
and it keeps serving for ``OCR_SHUTDOWN_DRAIN_S``, then it finishes its in-flight requests and exits. Each
step is one rule:

- ``rollout-readiness``: readiness is probed on the path that turns 503 at SIGTERM (``/readyz`` or
  ``/v2/health/ready``), not on liveness;
- ``rollout-prestop``: the serving container pauses in ``preStop`` for at least the propagation time;
- ``rollout-grace-period``: ``terminationGracePeriodSeconds`` is above preStop + drain + the longest
  request (``OCR_REQUEST_TIMEOUT_S``), or the kubelet kills requests still running;
- ``rollout-max-unavailable``: the Deployment KServe makes rolls with ``maxUnavailable: 0`` (and a surge),
  so capacity never drops below the replicas serving (KServe v0.20: ``spec.predictor.deploymentStrategy``,
  copied as is into the Deployment; without it KServe sets 25%/25%).

Knative mode is left out: KServe refuses ``deploymentStrategy`` there and Knative refuses ``lifecycle``;
Knative moves traffic to a revision once it is ready and its queue-proxy drains the old one.
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Container, Finding, Obj, containers, dig, find, finding

# istiod pushes endpoint changes after a debounce of at most PILOT_DEBOUNCE_MAX (10 s, Istio 1.30
# pilot/pkg/features/tuning.go); the EndpointSlice update before it takes well under a second.
MIN_PRESTOP_S = 10
# The service's defaults (service/settings.py) where a container leaves a setting unset.
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_SHUTDOWN_DRAIN_S = 2.0
DEFAULT_GRACE_PERIOD_S = 30  # Kubernetes' default, which KServe sets when the predictor has none
READINESS_PATHS = frozenset({"/readyz", "/v2/health/ready"})
SERVING_CONTAINER = "kserve-container"
RENDER = "(render)"


def _standard_services(ctx: Context) -> list[Obj]:
    return [
        isvc
        for isvc in find(ctx.objects, "InferenceService")
        if dig(isvc, "metadata", "annotations", "serving.kserve.io/deploymentMode") != "Knative"
    ]


def _serving(isvc: Obj) -> Iterator[Container]:
    """The predictor's serving container (``kserve-container``, else every non-init container)."""
    running = [c for c in containers(isvc) if not c.init]
    named = [c for c in running if c.name == SERVING_CONTAINER]
    yield from named or running


def _seconds(container: Container, name: str, default: float) -> float:
    raw = container.env(name)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        return default


def prestop_seconds(container: Container) -> float | None:
    """The pause of the container's preStop hook: a sleep action, or an exec of ``sleep N``; None if none."""
    hook = dig(container.spec, "lifecycle", "preStop") or {}
    seconds = dig(hook, "sleep", "seconds")
    if isinstance(seconds, int | float):
        return float(seconds)
    command = [str(part) for part in (dig(hook, "exec", "command") or [])]
    for index, part in enumerate(command[:-1]):
        if part.rsplit("/", 1)[-1] == "sleep":
            try:
                return float(command[index + 1])
            except ValueError:
                return None
    return None


@rule("rollout-readiness", when=lambda p: not p.knative)
def rollout_readiness(ctx: Context) -> Iterator[Finding]:
    """The serving container's readiness probe asks the path that turns 503 at SIGTERM (/readyz)."""
    services = _standard_services(ctx)
    if not services:
        yield finding(RENDER, "rollout-readiness", "no InferenceService in Standard mode in the render")
    for isvc in services:
        for container in _serving(isvc):
            probe = container.spec.get("readinessProbe") or {}
            path = [*container.path, "readinessProbe"]
            if not probe:
                yield finding(
                    isvc,
                    "rollout-readiness",
                    f"container {container.name} has no readinessProbe: a pod would get traffic before its model "
                    "is warm and keep it while shutting down",
                    path,
                )
            elif dig(probe, "httpGet", "path") not in READINESS_PATHS:
                yield finding(
                    isvc,
                    "rollout-readiness",
                    f"container {container.name} probes readiness on {dig(probe, 'httpGet', 'path')!r}, not on "
                    f"{' or '.join(sorted(READINESS_PATHS))} (the paths that answer 503 from SIGTERM on)",
                    [*path, "httpGet", "path"],
                )


@rule("rollout-prestop", when=lambda p: not p.knative)
def rollout_prestop(ctx: Context) -> Iterator[Finding]:
    """The serving container pauses in preStop for at least the endpoint and Istio propagation time."""
    for isvc in _standard_services(ctx):
        for container in _serving(isvc):
            pause = prestop_seconds(container)
            path = [*container.path, "lifecycle", "preStop"]
            if pause is None:
                yield finding(
                    isvc,
                    "rollout-prestop",
                    f"container {container.name} has no preStop pause (sleep action, or exec sleep N): SIGTERM "
                    "would arrive while gateways still send it requests",
                    path,
                )
            elif pause < MIN_PRESTOP_S:
                yield finding(
                    isvc,
                    "rollout-prestop",
                    f"container {container.name} pauses {pause:g} s in preStop, less than the {MIN_PRESTOP_S} s "
                    "endpoint removal may take to reach every Istio proxy",
                    path,
                )


@rule("rollout-grace-period", when=lambda p: not p.knative)
def rollout_grace_period(ctx: Context) -> Iterator[Finding]:
    """terminationGracePeriodSeconds is above preStop + OCR_SHUTDOWN_DRAIN_S + OCR_REQUEST_TIMEOUT_S."""
    for isvc in _standard_services(ctx):
        grace = dig(isvc, "spec", "predictor", "terminationGracePeriodSeconds")
        effective = grace if isinstance(grace, int) else DEFAULT_GRACE_PERIOD_S
        for container in _serving(isvc):
            pause = prestop_seconds(container) or 0.0
            drain = _seconds(container, "OCR_SHUTDOWN_DRAIN_S", DEFAULT_SHUTDOWN_DRAIN_S)
            timeout = _seconds(container, "OCR_REQUEST_TIMEOUT_S", DEFAULT_REQUEST_TIMEOUT_S)
            needed = pause + drain + timeout
            if effective <= needed:
                shown = grace if grace is not None else f"unset ({DEFAULT_GRACE_PERIOD_S})"
                yield finding(
                    isvc,
                    "rollout-grace-period",
                    f"terminationGracePeriodSeconds {shown} is not above preStop {pause:g} s + drain {drain:g} s + "
                    f"request timeout {timeout:g} s = {needed:g} s of container {container.name}: the kubelet "
                    "would kill requests still running",
                    "spec.predictor.terminationGracePeriodSeconds",
                )


def _is_zero(value: object) -> bool:
    return value in (0, "0", "0%")


@rule("rollout-max-unavailable", when=lambda p: not p.knative)
def rollout_max_unavailable(ctx: Context) -> Iterator[Finding]:
    """The predictor rolls with maxUnavailable 0 and a surge: a new pod is ready before an old one goes."""
    for isvc in _standard_services(ctx):
        strategy = dig(isvc, "spec", "predictor", "deploymentStrategy")
        path = "spec.predictor.deploymentStrategy"
        if not strategy:
            yield finding(
                isvc,
                "rollout-max-unavailable",
                "no deploymentStrategy: KServe rolls the predictor with maxUnavailable 25%, taking serving pods "
                "away before their replacements are ready",
                path,
            )
            continue
        kind = strategy.get("type", "RollingUpdate")
        if kind != "RollingUpdate":
            yield finding(
                isvc,
                "rollout-max-unavailable",
                f"strategy {kind!r} stops every old pod before a new one starts",
                f"{path}.type",
            )
            continue
        rolling = strategy.get("rollingUpdate") or {}
        unavailable = rolling.get("maxUnavailable")
        if not _is_zero(unavailable):
            shown = "unset (25%)" if unavailable is None else repr(unavailable)
            yield finding(
                isvc,
                "rollout-max-unavailable",
                f"maxUnavailable is {shown}, not 0: a rollout takes serving pods away before their replacements "
                "are ready",
                f"{path}.rollingUpdate.maxUnavailable",
            )
        elif _is_zero(rolling.get("maxSurge", "25%")):
            yield finding(
                isvc,
                "rollout-max-unavailable",
                "maxSurge is 0 with maxUnavailable 0: the rollout could never start a new pod",
                f"{path}.rollingUpdate.maxSurge",
            )
