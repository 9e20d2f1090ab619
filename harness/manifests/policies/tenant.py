"""Rule of the tenant at the edge: the ingress gateway names the tenant from the API key, never the client.

The service logs the ``X-Tenant-ID`` header of each request as its tenant (``service/context.py``). Behind the
gateway that header must say which API key the request carried: every HTTP route of a VirtualService on the
ingress gateway either sets it (a route that matches one exact ``x-api-key``) or removes it. How Istio 1.30
and its Envoy apply what this rule reads:

- ``headers.request`` of an HTTP route becomes the Envoy route's ``request_headers_to_add`` (``set``:
  ``OVERWRITE_IF_EXISTS_OR_ADD``, every value a client sent is discarded; ``add``: appended to the client's)
  and ``request_headers_to_remove``; the router applies them to the request it forwards, after the
  authorization and rate limit filters (istio/istio ``pilot/pkg/networking/core/route/route.go``).
- A set header with an empty value is dropped by Envoy (``keep_empty_value`` is false), which leaves the
  client's value in place; a value outside the service's tenant pattern is refused by the service.
- Header names match whatever their case (Envoy lowercases request header names and the matcher's name), so
  names are compared in lower case here. Routes are tried in order and the first match wins: a route without
  ``match`` catches everything after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.manifests.objects import Finding, Obj, dig, find, finding
from harness.manifests.policies.base import Context, rule
from harness.manifests.policies.mesh import GATEWAY_SELECTOR, api_key_conditions

TENANT_HEADER = "x-tenant-id"
API_KEY_HEADER = "x-api-key"
# The service's tenant pattern (service/context.py TENANT_RE; a test keeps the two equal).
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RULE = "tenant-from-api-key"

Path = list[str | int]


def _gateway_names(objects: Sequence[Obj]) -> set[tuple[str, str]]:
    """(namespace, name) of the Gateways whose selector names the ingress gateway's label (with more labels
    too: the rule would rather check one VirtualService too many than miss one)."""
    out = set()
    for gateway in find(objects, "Gateway"):
        selector = dig(gateway, "spec", "selector") or {}
        if isinstance(selector, dict) and all(selector.get(k) == v for k, v in GATEWAY_SELECTOR.items()):
            out.add((str(dig(gateway, "metadata", "namespace")), str(dig(gateway, "metadata", "name"))))
    return out


def gateway_virtual_services(objects: Sequence[Obj]) -> list[Obj]:
    """VirtualServices bound to a Gateway of the ingress gateway (``name`` or ``namespace/name``; ``mesh``
    and a VirtualService without ``gateways`` are the sidecars')."""
    gateways = _gateway_names(objects)
    out = []
    for service in find(objects, "VirtualService"):
        namespace = str(dig(service, "metadata", "namespace"))
        for reference in dig(service, "spec", "gateways") or []:
            gateway_namespace, _, name = str(reference).rpartition("/")
            if (gateway_namespace or namespace, name) in gateways:
                out.append(service)
                break
    return out


def _lower_keys(mapping: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def _key_condition(match: Any) -> dict[str, Any]:
    condition = _lower_keys(_lower_keys(match).get("headers")).get(API_KEY_HEADER)
    return condition if isinstance(condition, dict) else {}


def _exact_key(match: Any) -> str | None:
    """The value an HTTPMatchRequest requires of x-api-key exactly, or None."""
    exact = _key_condition(match).get("exact")
    return exact if isinstance(exact, str) and exact else None


def _may_take(match: Any, key: str) -> bool:
    """Whether a match entry (None: a route without match) may accept a request carrying this key: unless its
    x-api-key condition is an exact value or a prefix that the key is not (anything else may)."""
    condition = _key_condition(match)
    exact, prefix = condition.get("exact"), condition.get("prefix")
    if isinstance(exact, str) and exact:
        return exact == key
    if isinstance(prefix, str) and prefix:
        return key.startswith(prefix)
    return True


@dataclass(frozen=True)
class Route:
    """One HTTP route of a VirtualService on the gateway, as far as the tenant is concerned."""

    service: Obj
    index: int
    spec: dict[str, Any]

    def path(self, *rest: str | int) -> Path:
        return ["spec", "http", self.index, *rest]

    @property
    def request(self) -> dict[str, Any]:
        request = dig(self.spec, "headers", "request")
        return request if isinstance(request, dict) else {}

    @property
    def tenant(self) -> tuple[bool, Any]:
        """Whether the route sets x-tenant-id, and to what."""
        sets = _lower_keys(self.request.get("set"))
        return TENANT_HEADER in sets, sets.get(TENANT_HEADER)

    @property
    def removes(self) -> bool:
        return TENANT_HEADER in {str(n).lower() for n in self.request.get("remove") or []}

    @property
    def matches(self) -> list[Any]:
        matches = self.spec.get("match")
        return matches if isinstance(matches, list) else []

    @property
    def forwards(self) -> bool:
        """Whether the route sends requests on (a redirect or a direct response forwards nothing)."""
        return not (self.spec.get("redirect") or self.spec.get("directResponse"))


def _routes(service: Obj) -> list[Route]:
    return [
        Route(service, i, spec) for i, spec in enumerate(dig(service, "spec", "http") or []) if isinstance(spec, dict)
    ]


def _key_path(route: Route, m_index: int, match: Any) -> Path:
    headers = _lower_keys(match).get("headers") or {}
    name = next((str(k) for k in headers if str(k).lower() == API_KEY_HEADER), API_KEY_HEADER)
    return route.path("match", m_index, "headers", name, "exact")


def _header_operations(route: Route) -> Iterator[Finding]:
    """x-tenant-id only set or removed on the route itself: appended, it keeps the client's value; on one
    destination, the other destinations forward the client's."""
    if TENANT_HEADER in _lower_keys(route.request.get("add")):
        yield finding(
            route.service,
            RULE,
            f"adds {TENANT_HEADER}: appended to the value a client sent, not replacing it (use set)",
            route.path("headers", "request", "add"),
        )
    for d_index, destination in enumerate(route.spec.get("route") or []):
        request = dig(destination, "headers", "request") or {}
        named = [*_lower_keys(request.get("set")), *_lower_keys(request.get("add"))]
        named += [str(n).lower() for n in request.get("remove") or []]
        if TENANT_HEADER in named:
            yield finding(
                route.service,
                RULE,
                f"{TENANT_HEADER} is handled for one destination: set or remove it on the route",
                route.path("route", d_index, "headers", "request"),
            )


def _route_findings(route: Route) -> Iterator[Finding]:
    yield from _header_operations(route)
    sets, tenant = route.tenant
    if sets:
        if not (isinstance(tenant, str) and TENANT_PATTERN.match(tenant)):
            yield finding(
                route.service,
                RULE,
                f"sets {TENANT_HEADER} to {tenant!r}: not a tenant the service accepts (an empty value is dropped,"
                " leaving the client's)",
                route.path("headers", "request", "set"),
            )
        if not route.matches:
            yield finding(
                route.service,
                RULE,
                f"sets {TENANT_HEADER} on a route without a match: the tenant of every request, whatever its key",
                route.path("headers", "request", "set"),
            )
        for m_index, match in enumerate(route.matches):
            if _exact_key(match) is None:
                yield finding(
                    route.service,
                    RULE,
                    f"sets {TENANT_HEADER} on a match without an exact {API_KEY_HEADER}: the tenant does not"
                    " follow from the key",
                    route.path("match", m_index),
                )
    elif not route.removes and route.forwards:
        yield finding(
            route.service,
            RULE,
            f"neither sets nor removes {TENANT_HEADER}: a client's value reaches the service as its tenant",
            route.path("headers", "request"),
        )


def _name(route: Route) -> str:
    return str(route.spec.get("name") or f"http[{route.index}]")


@rule(RULE, when=lambda p: p.mesh)
def tenant_from_api_key(ctx: Context) -> Iterator[Finding]:
    """Every HTTP route of a VirtualService on the ingress gateway sets x-tenant-id (only a route matching an
    exact x-api-key) or removes it, and the keys the routes match are exactly the keys the gateway's API-key
    policy allows, each reaching a route that sets its tenant: the tenant the service logs follows from the
    key, never from the client."""
    conditions = api_key_conditions(ctx.objects)
    allowed = {v for c in conditions for v in c.values if isinstance(v, str)}
    mapped: set[str] = set()  # keys whose requests reach a route that sets the tenant
    # Each VirtualService's routes in their order. Istio appends the routes of several VirtualServices for one
    # host on the gateway's port into one virtual host (pilot/pkg/networking/core/gateway.go), in an order the
    # manifests do not set: one VirtualService per host keeps the order below the one that applies.
    for service in gateway_virtual_services(ctx.objects):
        routes = _routes(service)
        entries = [(route, m_index, match) for route in routes for m_index, match in enumerate(route.matches or [None])]
        for route in routes:
            yield from _route_findings(route)
        for position, (route, m_index, match) in enumerate(entries):
            key = _exact_key(match)
            if key is None:
                continue
            # Key values are secrets in a cluster render: findings say where a key is, never the key.
            key_path = _key_path(route, m_index, match)
            if key not in allowed:
                yield finding(
                    route.service,
                    RULE,
                    f"matches an {API_KEY_HEADER} that the gateway's API-key policy does not allow",
                    key_path,
                )
            earlier = next((r for r, _, m in entries[:position] if r is not route and _may_take(m, key)), None)
            if earlier is not None:
                yield finding(
                    route.service,
                    RULE,
                    f"never used for this key: route {_name(earlier)} comes first and may take its requests",
                    key_path,
                )
            elif route.tenant[0]:
                mapped.add(key)
    for condition in conditions:
        for v_index, value in enumerate(condition.values):
            if isinstance(value, str) and value not in mapped:
                yield finding(
                    condition.policy,
                    RULE,
                    f"allows a key that reaches no route setting {TENANT_HEADER} (one matching that exact"
                    f" {API_KEY_HEADER}, before any route that may take it)",
                    [*condition.path, v_index],
                )
