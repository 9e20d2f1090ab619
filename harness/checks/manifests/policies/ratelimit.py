"""Rules of the global rate limit: 10 requests per second per API key (by the x-api-key-id the authorizer sets),
and the gateway wired to enforce it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Finding, Obj, dig, find, finding
from harness.provisioning.yamlio import load

REQUESTS_PER_SECOND = 10
# The key's id as the API-key authorizer names it (never the key: see the rule api-keys-hashed-only).
API_KEY_HEADER = "x-api-key-id"
RATELIMIT_FILTER = "envoy.filters.http.ratelimit"
RATELIMIT_GRPC_PORT = 8081
RATELIMIT_HEADERS = "DRAFT_VERSION_03"
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
RENDER = "(render)"


@dataclass(frozen=True)
class RateLimitConfig:
    """An envoyproxy/ratelimit configuration found in a ConfigMap."""

    configmap: Obj
    key: str
    domain: str
    descriptors: list[Any]


def ratelimit_configs(objects: Sequence[Obj]) -> list[RateLimitConfig]:
    """ConfigMap entries that parse as ratelimit configurations (a domain and descriptors)."""
    found = []
    for configmap in find(objects, "ConfigMap"):
        for key, text in (configmap.get("data") or {}).items():
            try:
                parsed = load(str(text))
            except yaml.YAMLError:
                continue
            if isinstance(parsed, dict) and "domain" in parsed and "descriptors" in parsed:
                descriptors = parsed["descriptors"] if isinstance(parsed["descriptors"], list) else []
                found.append(RateLimitConfig(configmap, key, str(parsed["domain"]), descriptors))
    return found


@dataclass(frozen=True)
class Patch:
    """One configPatch of a gateway EnvoyFilter."""

    envoyfilter: Obj
    index: int
    spec: dict[str, Any]

    @property
    def value(self) -> dict[str, Any]:
        value = dig(self.spec, "patch", "value")
        return value if isinstance(value, dict) else {}

    def path(self, *rest: str | int) -> list[str | int]:
        return ["spec", "configPatches", self.index, *rest]


def gateway_patches(objects: Sequence[Obj]) -> list[Patch]:
    """configPatches of EnvoyFilters on the ingress gateway, in the GATEWAY context."""
    out = []
    for envoyfilter in find(objects, "EnvoyFilter"):
        if dig(envoyfilter, "spec", "workloadSelector", "labels") != GATEWAY_SELECTOR:
            continue
        for index, patch in enumerate(dig(envoyfilter, "spec", "configPatches") or []):
            if isinstance(patch, dict) and dig(patch, "match", "context") == "GATEWAY":
                out.append(Patch(envoyfilter, index, patch))
    return out


def api_key_descriptor_keys(patches: Sequence[Patch]) -> list[tuple[Patch, str]]:
    """Descriptor keys the gateway sends for the x-api-key-id header (rate_limits request_headers actions)."""
    out = []
    for patch in patches:
        for limit in patch.value.get("rate_limits") or []:
            for action in (limit or {}).get("actions") or []:
                headers = (action or {}).get("request_headers") or {}
                if str(headers.get("header_name", "")).lower() == API_KEY_HEADER and headers.get("descriptor_key"):
                    out.append((patch, str(headers["descriptor_key"])))
    return out


@rule("ratelimit-per-key", when=lambda p: p.ratelimit)
def ratelimit_per_key(ctx: Context) -> Iterator[Finding]:
    """The rate limit configuration gives every API key its own limit of 10 requests per second."""
    configs = ratelimit_configs(ctx.objects)
    if not configs:
        yield finding(RENDER, "ratelimit-per-key", "no ConfigMap holds a ratelimit configuration (domain, descriptors)")
    sent = {key for _, key in api_key_descriptor_keys(gateway_patches(ctx.objects))} or {"api_key"}
    for config in configs:
        base: list[str | int] = ["data", config.key]
        matching = [(i, d) for i, d in enumerate(config.descriptors) if isinstance(d, dict) and d.get("key") in sent]
        if not matching:
            yield finding(
                config.configmap,
                "ratelimit-per-key",
                f"no descriptor for the key the gateway sends for {API_KEY_HEADER} ({', '.join(sorted(sent))})",
                [*base, "descriptors"],
            )
        for index, descriptor in matching:
            where = [*base, "descriptors", index]
            if "value" in descriptor:
                yield finding(
                    config.configmap,
                    "ratelimit-per-key",
                    f"descriptor has value {descriptor['value']!r}: it limits that one key, not each key",
                    [*where, "value"],
                )
            limit = descriptor.get("rate_limit") or {}
            if limit.get("unlimited"):
                yield finding(config.configmap, "ratelimit-per-key", "descriptor is unlimited", [*where, "rate_limit"])
            if limit.get("unit") != "second" or limit.get("requests_per_unit") != REQUESTS_PER_SECOND:
                yield finding(
                    config.configmap,
                    "ratelimit-per-key",
                    f"limit is {limit.get('requests_per_unit')!r} per {limit.get('unit')!r}, "
                    f"not {REQUESTS_PER_SECOND} per second",
                    [*where, "rate_limit"],
                )


def _grpc_cluster_port(ctx: Context, cluster: str, patches: Sequence[Patch]) -> tuple[int | None, str]:
    """The port behind a cluster name, and how it was found (an Istio outbound cluster or a CLUSTER patch)."""
    if cluster.startswith("outbound|"):
        parts = cluster.split("|")
        if len(parts) == 4 and parts[1].isdigit():
            port, host = int(parts[1]), parts[3]
            name, _, rest = host.partition(".")
            namespace = rest.split(".")[0] if rest else ""
            services = find(ctx.objects, "Service", name, namespace)
            declared = {p.get("port") for s in services for p in dig(s, "spec", "ports") or []}
            if port not in declared:
                return port, f"no Service {namespace}/{name} with port {port} in the render"
            return port, ""
        return None, f"cannot read a port from cluster {cluster!r}"
    for patch in patches:
        if patch.spec.get("applyTo") == "CLUSTER" and patch.value.get("name") == cluster:
            ports = [
                dig(endpoint, "endpoint", "address", "socket_address", "port_value")
                for group in dig(patch.value, "load_assignment", "endpoints") or []
                for endpoint in (group or {}).get("lb_endpoints") or []
            ]
            endpoint_port = next((p for p in ports if isinstance(p, int)), None)
            return endpoint_port, "" if endpoint_port is not None else f"cluster {cluster!r} has no endpoint port"
    return None, f"cluster {cluster!r} is neither an Istio outbound cluster nor added by a CLUSTER patch"


@rule("ratelimit-wiring", when=lambda p: p.ratelimit)
def ratelimit_wiring(ctx: Context) -> Iterator[Finding]:
    """The ingress gateway runs the ratelimit HTTP filter for the configuration's domain against the rate limit
    service's gRPC port (8081), answers with x-ratelimit headers, and sends x-api-key-id as the descriptor the
    configuration limits."""
    patches = gateway_patches(ctx.objects)
    filters = [p for p in patches if p.spec.get("applyTo") == "HTTP_FILTER" and p.value.get("name") == RATELIMIT_FILTER]
    domains = {config.domain for config in ratelimit_configs(ctx.objects)}
    if not filters:
        yield finding(RENDER, "ratelimit-wiring", f"no {RATELIMIT_FILTER} HTTP filter on the ingress gateway")
    for patch in filters:
        typed = patch.value.get("typed_config") or {}
        config_path = patch.path("patch", "value", "typed_config")
        if typed.get("domain") not in domains:
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"domain {typed.get('domain')!r} matches no ratelimit configuration ({', '.join(sorted(domains))})",
                [*config_path, "domain"],
            )
        if typed.get("enable_x_ratelimit_headers") != RATELIMIT_HEADERS:
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"enable_x_ratelimit_headers is {typed.get('enable_x_ratelimit_headers')!r}, not {RATELIMIT_HEADERS}",
                [*config_path, "enable_x_ratelimit_headers"],
            )
        cluster = dig(typed, "rate_limit_service", "grpc_service", "envoy_grpc", "cluster_name")
        cluster_path = [*config_path, "rate_limit_service", "grpc_service", "envoy_grpc", "cluster_name"]
        if not cluster:
            yield finding(patch.envoyfilter, "ratelimit-wiring", "no rate_limit_service gRPC cluster", cluster_path)
            continue
        port, problem = _grpc_cluster_port(ctx, str(cluster), patches)
        if problem:
            yield finding(patch.envoyfilter, "ratelimit-wiring", problem, cluster_path)
        elif port != RATELIMIT_GRPC_PORT:
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"rate limit service reached on port {port}, not its gRPC port {RATELIMIT_GRPC_PORT}",
                cluster_path,
            )
    sent = api_key_descriptor_keys(patches)
    if not sent:
        yield finding(
            RENDER,
            "ratelimit-wiring",
            f"no gateway rate_limits action sends the {API_KEY_HEADER} header as a descriptor",
        )
    # Once per patch, though one patch may send the key from several actions (patches are dicts: by identity).
    for patch in {id(p): p for p, _ in sent}.values():
        yield from _every_host(patch)
    limited = {d.get("key") for c in ratelimit_configs(ctx.objects) for d in c.descriptors if isinstance(d, dict)}
    for patch, key in sent:
        if key not in limited:
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"descriptor_key {key!r} is limited by no ratelimit configuration",
                patch.path("patch", "value", "rate_limits"),
            )


# What narrows a VIRTUAL_HOST patch in Istio 1.30 (envoyfilter/rc_patch.go): routeConfigurationMatch compares
# the route configuration's name, port number, port name and gateway; virtualHostMatch compares the vhost's
# name and domainName (a vhost's route match plays no part for VIRTUAL_HOST patches).
_ROUTE_CONFIGURATION_NARROWING = ("name", "portNumber", "portName", "gateway")
_VHOST_NARROWING = ("name", "domainName")


def _every_host(patch: Patch) -> Iterator[Finding]:
    """The rate_limits must reach every virtual host of the gateway: a host left out is a way around the limit
    (the layout model's host, or KServe's own Ingress were it enabled)."""
    if patch.spec.get("applyTo") != "VIRTUAL_HOST":
        yield finding(
            patch.envoyfilter,
            "ratelimit-wiring",
            f"rate_limits are patched into {patch.spec.get('applyTo')}, not every VIRTUAL_HOST of the gateway",
            patch.path("applyTo"),
        )
        return
    route_configuration = dig(patch.spec, "match", "routeConfiguration") or {}
    for field in _ROUTE_CONFIGURATION_NARROWING:
        if route_configuration.get(field):
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"rate_limits only for route configuration {field} {route_configuration[field]!r}: the gateway's"
                " other servers are not limited",
                patch.path("match", "routeConfiguration", field),
            )
    vhost = route_configuration.get("vhost") or {}
    for field in _VHOST_NARROWING:
        if vhost.get(field):
            yield finding(
                patch.envoyfilter,
                "ratelimit-wiring",
                f"rate_limits only for virtual host {field} {vhost[field]!r}: requests to any other host of the"
                " gateway bypass the limit",
                patch.path("match", "routeConfiguration", "vhost", field),
            )
