"""Rules of the API keys: no key in any configuration, and the authorizer that holds their hashes wired in.

The keys are checked at the ingress gateway by the authorizer (``python -m service.authz``), which reads
salted hashes from the Secret ``ocr-api-key-hashes``; nothing else needs a key. A policy or route that
matches on ``x-api-key``, or a rate limit that counts by it, would need the key in its configuration (or send
it to the rate limit service and its Redis as a counter name): readable by anyone who may read policies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning import extauthz
from harness.provisioning.objects import Finding, Obj, dig, find, finding

API_KEY_HEADER = "x-api-key"
API_KEY_CONDITION = f"request.headers[{API_KEY_HEADER}]"
# What `harness manifests keys` generates (secrets.token_urlsafe(32)): 43 URL-safe characters. A string of
# that shape outside a Secret is taken for a key; a finding names where it is, never the value.
KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
HASHES_SECRET = "ocr-api-key-hashes"
NO_KEYS = "api-keys-hashed-only"
WIRING = "authz-wiring"
RENDER = "(render)"

Path = list[str | int]


def _strings(node: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, [*path, str(key)])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, [*path, index])
    elif isinstance(node, str):
        yield path, node


def _header_matches(match: Any) -> dict[str, Any]:
    headers = match.get("headers") if isinstance(match, dict) else None
    return {str(k).lower(): v for k, v in headers.items()} if isinstance(headers, dict) else {}


@rule(NO_KEYS, when=lambda p: p.mesh)
def api_keys_hashed_only(ctx: Context) -> Iterator[Finding]:
    """No API key in any configuration: no AuthorizationPolicy conditions on x-api-key, no VirtualService
    matches on it, no rate limit counts by it, and no object but a Secret holds a value shaped like a key."""
    yield from _key_conditions(ctx.objects)
    yield from _key_route_matches(ctx.objects)
    yield from _key_rate_limits(ctx.objects)
    yield from _key_shaped_values(ctx.objects)


def _key_conditions(objects: Sequence[Obj]) -> Iterator[Finding]:
    for policy in find(objects, "AuthorizationPolicy"):
        for r_index, entry in enumerate(dig(policy, "spec", "rules") or []):
            for w_index, condition in enumerate((entry or {}).get("when") or []):
                if str((condition or {}).get("key", "")).lower() == API_KEY_CONDITION:
                    yield finding(
                        policy,
                        NO_KEYS,
                        f"a {API_KEY_CONDITION} condition lists keys in the policy: check keys in the authorizer",
                        ["spec", "rules", r_index, "when", w_index],
                    )


def _key_route_matches(objects: Sequence[Obj]) -> Iterator[Finding]:
    for service in find(objects, "VirtualService"):
        for h_index, route in enumerate(dig(service, "spec", "http") or []):
            for m_index, match in enumerate((route or {}).get("match") or []):
                if API_KEY_HEADER in _header_matches(match):
                    yield finding(
                        service,
                        NO_KEYS,
                        f"a route matches on {API_KEY_HEADER}: the key would be in the route",
                        ["spec", "http", h_index, "match", m_index, "headers"],
                    )


def _key_rate_limits(objects: Sequence[Obj]) -> Iterator[Finding]:
    for envoyfilter in find(objects, "EnvoyFilter"):
        for path, value in _strings(dig(envoyfilter, "spec", "configPatches"), ["spec", "configPatches"]):
            if path[-1] == "header_name" and value.lower() == API_KEY_HEADER:
                yield finding(
                    envoyfilter,
                    NO_KEYS,
                    f"reads the {API_KEY_HEADER} header: the key would reach the rate limit service (count by"
                    " x-api-key-id)",
                    path,
                )


def _key_shaped_values(objects: Sequence[Obj]) -> Iterator[Finding]:
    for obj in objects:
        if obj.get("kind") == "Secret":
            continue
        for path, value in _strings(obj, []):
            if KEY_SHAPE.fullmatch(value) and path[:2] != ["metadata", "uid"]:
                yield finding(obj, NO_KEYS, "holds a value shaped like a generated API key outside a Secret", path)


def _labels_match(selector: Any, labels: Any) -> bool:
    return (
        isinstance(selector, dict)
        and bool(selector)
        and isinstance(labels, dict)
        and all(labels.get(k) == v for k, v in selector.items())
    )


def _authorizer_pods(objects: Sequence[Obj], selector: Any) -> list[Obj]:
    return [
        obj
        for obj in find(objects, "Deployment", namespace=extauthz.NAMESPACE)
        if _labels_match(selector, dig(obj, "spec", "template", "metadata", "labels"))
    ]


def _target_port(service: Obj, port: int) -> Any:
    for entry in dig(service, "spec", "ports") or []:
        if entry.get("port") == port:
            return entry.get("targetPort", port)
    return None


def _container_port(deployment: Obj, target: Any) -> int | None:
    for container in dig(deployment, "spec", "template", "spec", "containers") or []:
        for entry in container.get("ports") or []:
            if target in (entry.get("name"), entry.get("containerPort")):
                return int(entry["containerPort"])
    return None


def _gateway_only_allow(ctx: Context, selector: dict[str, Any], port: int) -> Iterator[Finding]:
    allows = [
        p
        for p in find(ctx.objects, "AuthorizationPolicy", namespace=extauthz.NAMESPACE)
        if dig(p, "spec", "action") in (None, "ALLOW")
        and _labels_match(dig(p, "spec", "selector", "matchLabels"), selector)
    ]
    if not allows:
        yield finding(
            f"Namespace/{extauthz.NAMESPACE}",
            WIRING,
            "no ALLOW AuthorizationPolicy selects the authorizer's pods: deny-all refuses the gateway's checks",
        )
    for policy in allows:
        for r_index, entry in enumerate(dig(policy, "spec", "rules") or []):
            sources = [dig(f, "source") or {} for f in (entry or {}).get("from") or []]
            principals = {str(p) for s in sources for p in s.get("principals") or []}
            others = [s for s in sources if set(s) - {"principals"}]
            ports = {str(p) for t in (entry or {}).get("to") or [] for p in dig(t, "operation", "ports") or []}
            if not sources or others or principals != {extauthz.GATEWAY_PRINCIPAL}:
                yield finding(
                    policy,
                    WIRING,
                    f"admits more than the ingress gateway ({extauthz.GATEWAY_PRINCIPAL}) to the authorizer",
                    ["spec", "rules", r_index, "from"],
                )
            elif ports != {str(port)}:
                yield finding(
                    policy,
                    WIRING,
                    f"admits the gateway on ports {sorted(ports) or 'all'}, not the check port {port} alone",
                    ["spec", "rules", r_index, "to"],
                )


def _gateway_only_network(ctx: Context, pod_labels: dict[str, Any], port: int) -> Iterator[Finding]:
    fences = [
        p
        for p in find(ctx.objects, "NetworkPolicy", namespace=extauthz.NAMESPACE)
        if _labels_match(dig(p, "spec", "podSelector", "matchLabels"), pod_labels)
    ]
    if not fences:
        yield finding(
            f"Namespace/{extauthz.NAMESPACE}",
            WIRING,
            "no NetworkPolicy selects the authorizer's pods: any pod may reach its check port",
        )
    gateway_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
        "podSelector": {"matchLabels": {"istio": "ingressgateway"}},
    }
    for fence in fences:
        for i_index, entry in enumerate(dig(fence, "spec", "ingress") or []):
            peers = (entry or {}).get("from") or []
            ports = [p.get("port") for p in (entry or {}).get("ports") or []]
            if peers != [gateway_peer] or ports != [port]:
                yield finding(
                    fence,
                    WIRING,
                    f"admits more than the ingress gateway's pods on port {port}",
                    ["spec", "ingress", i_index],
                )


@rule(WIRING, when=lambda p: p.mesh)
def authz_wiring(ctx: Context) -> Iterator[Finding]:
    """The API-key authorizer is what istiod's extension provider names: a Service at the provider's host and
    port, served by a Deployment of ``service.authz`` (two replicas or more, a PodDisruptionBudget: the gateway
    fails closed without it) that mounts the hashes Secret; only the ingress gateway reaches its check port
    (an ALLOW rule for the gateway's identity alone, a NetworkPolicy for the gateway's pods alone)."""
    name, namespace, port = extauthz.SERVICE, extauthz.NAMESPACE, extauthz.PORT
    host = dig(extauthz.PROVIDER, "envoyExtAuthzHttp", "service")
    if host != f"{name}.{namespace}.svc.cluster.local" or dig(extauthz.PROVIDER, "envoyExtAuthzHttp", "port") != port:
        yield finding("(istiod meshConfig)", WIRING, f"the provider names {host!r}, not Service {namespace}/{name}")
    services = find(ctx.objects, "Service", name, namespace)
    if not services:
        yield finding(
            RENDER, WIRING, f"no Service {namespace}/{name}: the provider {extauthz.PROVIDER_NAME} has no host"
        )
        return
    service = services[0]
    target = _target_port(service, port)
    if target is None:
        yield finding(service, WIRING, f"no port {port}, the provider's", "spec.ports")
        return
    selector = dig(service, "spec", "selector") or {}
    deployments = _authorizer_pods(ctx.objects, selector)
    if not deployments:
        yield finding(service, WIRING, "selects no Deployment's pods", "spec.selector")
        return
    for deployment in deployments:
        yield from _deployment_findings(ctx, deployment, target)
        pod_labels = dig(deployment, "spec", "template", "metadata", "labels") or {}
        container_port = _container_port(deployment, target) or port
        yield from _gateway_only_allow(ctx, pod_labels, container_port)
        yield from _gateway_only_network(ctx, pod_labels, container_port)


def _deployment_findings(ctx: Context, deployment: Obj, target: Any) -> Iterator[Finding]:
    spec = dig(deployment, "spec", "template", "spec") or {}
    commands = [" ".join(map(str, c.get("command") or [])) for c in spec.get("containers") or []]
    if not any("service.authz" in command for command in commands):
        yield finding(deployment, WIRING, "runs no `python -m service.authz`", "spec.template.spec.containers")
    if _container_port(deployment, target) is None:
        yield finding(deployment, WIRING, f"no container port {target!r}, the Service's target", "spec.template.spec")
    secrets = [dig(v, "secret", "secretName") for v in spec.get("volumes") or []]
    if HASHES_SECRET not in secrets:
        yield finding(
            deployment, WIRING, f"mounts no Secret {HASHES_SECRET} (the key hashes)", "spec.template.spec.volumes"
        )
    replicas = dig(deployment, "spec", "replicas")
    if not isinstance(replicas, int) or replicas < 2:
        yield finding(
            deployment, WIRING, f"{replicas!r} replicas: one pod down and every request is refused", "spec.replicas"
        )
    labels = dig(deployment, "spec", "template", "metadata", "labels") or {}
    budgets = [
        p
        for p in find(ctx.objects, "PodDisruptionBudget", namespace=extauthz.NAMESPACE)
        if _labels_match(dig(p, "spec", "selector", "matchLabels"), labels)
    ]
    if not budgets:
        yield finding(deployment, WIRING, "no PodDisruptionBudget: a drain may stop every authorizer at once")
