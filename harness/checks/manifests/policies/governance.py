"""Every InferenceService gets the same governance as every other: a second model (components/layout) is
monitored, fenced, routed and keyed as the OCR model is. One rule, ``isvc-governance``; for each
InferenceService, the same as the others:

- its pods are scraped by a PodMonitor, with the same endpoints as the others' (under the mesh: Istio's
  merged metrics, not the plaintext port STRICT mTLS refuses), wherever any InferenceService's are;
- under the mesh: an ALLOW AuthorizationPolicy selects its pods and admits the same principals (the ingress
  gateway) as the others' (deny-all refuses everything else);
- under the mesh: a VirtualService routes to its predictor through a Gateway that lists the route's host and
  selects the same gateway workload as the others' routes do: the workload the API-key check and the rate
  limit per key are attached to;
- its version is set in one place: the InferenceService's ``app.kubernetes.io/version`` label, equal to its
  predictor's pod label and to ``OCR_MODEL_VERSION``.

STRICT mTLS, the API-key check and the rate limit select the mesh or the gateway workload, not an
InferenceService: a predictor reached through that gateway has them (rules mtls-strict, api-key-required,
ratelimit-*).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Container, Finding, Obj, containers, dig, find, finding

RULE = "isvc-governance"
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe's label on an InferenceService's pods
VERSION_LABEL = "app.kubernetes.io/version"
VERSION_VAR = "OCR_MODEL_VERSION"
SERVING_CONTAINER = "kserve-container"


def _name(obj: Obj) -> str:
    return str(dig(obj, "metadata", "name"))


def _namespace(obj: Obj) -> str:
    return str(dig(obj, "metadata", "namespace"))


def _selects(selector: Mapping[str, str] | None, isvc: Obj) -> bool:
    """A ``matchLabels`` selector that picks this InferenceService's pods (by KServe's label)."""
    return bool(selector) and selector == {ISVC_LABEL: _name(isvc)}  # type: ignore[comparison-overlap]


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _serving(isvc: Obj) -> Container | None:
    running = [c for c in containers(isvc) if not c.init]
    return next((c for c in running if c.name == SERVING_CONTAINER), running[0] if running else None)


def _monitors(ctx: Context, isvc: Obj) -> list[Obj]:
    return [
        m
        for m in find(ctx.objects, "PodMonitor", namespace=_namespace(isvc))
        if _selects(dig(m, "spec", "selector", "matchLabels"), isvc)
    ]


def _allowed_principals(ctx: Context, isvc: Obj) -> set[str]:
    out: set[str] = set()
    for policy in find(ctx.objects, "AuthorizationPolicy", namespace=_namespace(isvc)):
        if dig(policy, "spec", "action") not in (None, "ALLOW"):
            continue
        if not _selects(dig(policy, "spec", "selector", "matchLabels"), isvc):
            continue
        for entry in dig(policy, "spec", "rules") or []:
            for source in entry.get("from") or []:
                out.update(dig(source, "source", "principals") or [])
    return out


def _predictor_hosts(isvc: Obj) -> set[str]:
    name, namespace = _name(isvc), _namespace(isvc)
    short = f"{name}-predictor"
    return {short, f"{short}.{namespace}", f"{short}.{namespace}.svc", f"{short}.{namespace}.svc.cluster.local"}


def _gateway_workloads(ctx: Context, isvc: Obj) -> set[str]:
    """The gateway workloads (their selectors) through which a VirtualService routes to this predictor, on a
    host a Gateway it is bound to lists."""
    out: set[str] = set()
    targets = _predictor_hosts(isvc)
    for service in find(ctx.objects, "VirtualService"):
        routed = any(
            dig(route, "destination", "host") in targets
            for http in dig(service, "spec", "http") or []
            for route in http.get("route") or []
        )
        if not routed:
            continue
        hosts = set(dig(service, "spec", "hosts") or [])
        for ref in dig(service, "spec", "gateways") or []:
            namespace, _, gateway_name = ref.rpartition("/")
            for gateway in find(ctx.objects, "Gateway", gateway_name, namespace or _namespace(service)):
                served = {h for server in dig(gateway, "spec", "servers") or [] for h in server.get("hosts") or []}
                if hosts & served:
                    out.add(_canonical(dig(gateway, "spec", "selector")))
    return out


def _version(isvc: Obj) -> Iterator[Finding]:
    label = dig(isvc, "metadata", "labels", VERSION_LABEL)
    if not label:
        yield finding(isvc, RULE, f"no {VERSION_LABEL} label: the model version has no one place", "metadata.labels")
        return
    pod_label = dig(isvc, "spec", "predictor", "labels", VERSION_LABEL)
    if pod_label != label:
        yield finding(
            isvc,
            RULE,
            f"the predictor's pods are labelled {VERSION_LABEL}={pod_label!r}, not the InferenceService's {label!r}",
            f"spec.predictor.labels.{VERSION_LABEL}",
        )
    serving = _serving(isvc)
    if serving is not None and serving.env(VERSION_VAR) != label:
        yield finding(
            isvc,
            RULE,
            f"container {serving.name} reports {VERSION_VAR}={serving.env(VERSION_VAR)!r}, not the version label"
            f" {label!r}",
            [*serving.path, "env"],
        )


@rule(RULE)
def isvc_governance(ctx: Context) -> Iterator[Finding]:
    """Each InferenceService is monitored, fenced and routed as the others are, and its version set in one place."""
    services = find(ctx.objects, "InferenceService")
    monitored = {_name(i): _monitors(ctx, i) for i in services}
    endpoints = {_canonical(dig(m, "spec", "podMetricsEndpoints")) for found in monitored.values() for m in found}
    principals = {_name(i): _allowed_principals(ctx, i) for i in services}
    gateways = {_name(i): _gateway_workloads(ctx, i) for i in services}
    everyone_principals = set().union(*principals.values()) if principals else set()
    everyone_gateways = set().union(*gateways.values()) if gateways else set()
    for isvc in services:
        name = _name(isvc)
        yield from _version(isvc)
        if any(monitored.values()) and not monitored[name]:
            yield finding(isvc, RULE, "no PodMonitor scrapes its pods, as one does the other predictors'", "metadata")
        if len(endpoints) > 1:
            for monitor in monitored[name]:
                yield finding(
                    monitor,
                    RULE,
                    f"scrapes the pods of {name} otherwise than the other predictors' PodMonitors"
                    f" ({len(endpoints)} different podMetricsEndpoints)",
                    "spec.podMetricsEndpoints",
                )
        if not ctx.profile.mesh:
            continue
        if principals[name] != everyone_principals:
            missing = sorted(everyone_principals - principals[name])
            yield finding(
                isvc,
                RULE,
                f"no ALLOW AuthorizationPolicy admits {', '.join(missing)} to its pods, as one does to the other"
                " predictors' (deny-all refuses it)",
                "metadata",
            )
        if not gateways[name]:
            yield finding(
                isvc,
                RULE,
                "no VirtualService routes to its predictor through a Gateway listing the route's host: clients"
                " reach it only around the gateway's API keys and rate limits",
                "metadata",
            )
        elif gateways[name] != everyone_gateways:
            yield finding(
                isvc,
                RULE,
                "its route goes through another gateway workload than the other predictors': not the one the"
                " API-key check and the rate limit are attached to",
                "metadata",
            )
