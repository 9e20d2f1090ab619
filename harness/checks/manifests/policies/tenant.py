"""Rule of the tenant at the edge: the ingress gateway names the tenant from the API key, never the client.

The service logs the ``X-Tenant-ID`` header of each request as its tenant (``service/api/context.py``), and the
rate limit counts by ``x-api-key-id``. Behind the gateway both come from the API-key authorizer: the
extension provider copies them from its answer onto the request (Istio ``headersToUpstreamOnAllow``, Envoy's
``allowed_upstream_headers``, which overwrite a value the client sent), in the ext_authz filter, before
routing. What would undo that is a route's own header operations: Istio puts ``headers.request`` of an HTTP
route (or of one destination) on the Envoy route, and the router applies them to the request it forwards,
after the authorization filters (istio/istio ``pilot/pkg/networking/core/route/route.go``). So no route of a
VirtualService on the ingress gateway sets, appends or removes either header. Header names match whatever
their case (Envoy lowercases request header names), so names are compared in lower case here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from harness.checks.manifests.policies.base import Context, rule
from harness.checks.manifests.policies.mesh import GATEWAY_SELECTOR
from harness.provisioning import extauthz
from harness.provisioning.objects import Finding, Obj, dig, find, finding

TENANT_HEADER = "x-tenant-id"
KEY_ID_HEADER = "x-api-key-id"
FROM_AUTHORIZER = (TENANT_HEADER, KEY_ID_HEADER)
RULE = "tenant-from-authorizer"
MESH_CONFIG = "(istiod meshConfig)"

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


def _names(request: Any) -> dict[str, str]:
    """Header names a ``headers.request`` block touches (lower case), each with the operation."""
    if not isinstance(request, dict):
        return {}
    out: dict[str, str] = {}
    for operation in ("set", "add"):
        for name in request.get(operation) or {} if isinstance(request.get(operation), dict) else {}:
            out[str(name).lower()] = operation
    for name in request.get("remove") or []:
        out[str(name).lower()] = "remove"
    return out


_WHAT = {"set": "replaces", "add": "appends to", "remove": "removes"}


def _operations(service: Obj, request: Any, path: Path) -> Iterator[Finding]:
    for name, operation in _names(request).items():
        if name in FROM_AUTHORIZER:
            yield finding(
                service,
                RULE,
                f"{_WHAT[operation]} {name}, which the API-key authorizer sets: the router applies this after the"
                " check",
                [*path, operation],
            )


@rule(RULE, when=lambda p: p.mesh)
def tenant_from_authorizer(ctx: Context) -> Iterator[Finding]:
    """x-tenant-id and x-api-key-id reach the service as the API-key authorizer answered them: its extension
    provider copies both onto the request, and no HTTP route of a VirtualService on the ingress gateway (nor
    one of its destinations) sets, appends or removes either."""
    upstream = {str(h).lower() for h in extauthz.PROVIDER["envoyExtAuthzHttp"].get("headersToUpstreamOnAllow") or []}
    for header in FROM_AUTHORIZER:
        if header not in upstream:
            yield finding(
                MESH_CONFIG,
                RULE,
                f"the provider {extauthz.PROVIDER_NAME} does not copy {header} from the authorizer's answer"
                " (headersToUpstreamOnAllow): a client's value would reach the service",
            )
    for service in gateway_virtual_services(ctx.objects):
        for index, route in enumerate(dig(service, "spec", "http") or []):
            if not isinstance(route, dict):
                continue
            yield from _operations(
                service, dig(route, "headers", "request"), ["spec", "http", index, "headers", "request"]
            )
            for d_index, destination in enumerate(route.get("route") or []):
                path: Path = ["spec", "http", index, "route", d_index, "headers", "request"]
                yield from _operations(service, dig(destination, "headers", "request"), path)
