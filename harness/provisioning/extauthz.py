"""The gateway's API-key authorizer as Istio knows it: the extension provider istiod's meshConfig declares.

The manifests name the provider (the CUSTOM AuthorizationPolicy ``ocr-require-api-key``) and deploy the
authorizer (``components/istio/authz.yaml``); istiod learns what the provider is from its chart values, set by
the install plan (:data:`harness.provisioning.plan.ISTIOD_VALUES`, from :func:`helm_values`). Kept here, next to
the rules that check the manifests against it, so the two cannot drift apart.

Fields of ``MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationHttpProvider`` as Istio 1.30 defines them
(istio/api ``mesh/v1alpha1/config.proto``) and turns them into Envoy's ext_authz filter (istio/istio
``pilot/pkg/security/authz/builder/extauthz.go``):

- ``includeRequestHeadersInCheck``: Envoy's ``allowed_headers``; the method, path, host, ``Content-Length`` and
  ``Authorization`` are always sent (Envoy's ext_authz.proto, on ``allowed_headers``).
  Here also ``x-api-key`` (the key to check) and ``x-request-id``, so that the authorizer's 403 names the
  request, as the service's errors do.
- ``headersToUpstreamOnAllow``: ``allowed_upstream_headers``, which *overwrite* a header the client sent
  (Envoy: "coexistent headers will be overridden"): the tenant and key id are the authorizer's alone.
- ``headersToDownstreamOnDeny``: ``allowed_client_headers``; the body of a denial always reaches the client.
- ``failOpen: false``: an unreachable, slow (``timeout``) or 5xx authorizer is a denial with
  ``statusOnError`` (unset: 403). The gateway fails closed.
"""

from __future__ import annotations

from typing import Any

from harness.provisioning import identity

PROVIDER_NAME = "ocr-api-key"
SERVICE = "ocr-authz"
NAMESPACE = identity.NAMESPACE
PORT = 8080
GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway"

PROVIDER: dict[str, Any] = {
    "name": PROVIDER_NAME,
    "envoyExtAuthzHttp": {
        "service": f"{SERVICE}.{NAMESPACE}.svc.cluster.local",
        "port": PORT,
        "timeout": "1s",
        "failOpen": False,
        "includeRequestHeadersInCheck": ["x-api-key", "x-request-id"],
        "headersToUpstreamOnAllow": ["x-tenant-id", "x-api-key-id"],
        "headersToDownstreamOnDeny": ["content-type"],
    },
}


def _helm_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "{" + ",".join(str(v) for v in value) + "}"
    return str(value)


def helm_values(provider: dict[str, Any] = PROVIDER, index: int = 0) -> dict[str, str]:
    """The provider as ``helm --set`` values of the istiod chart (``meshConfig`` is a top-level value there)."""
    prefix = f"meshConfig.extensionProviders[{index}]"
    out = {f"{prefix}.name": str(provider["name"])}
    for field, value in provider["envoyExtAuthzHttp"].items():
        out[f"{prefix}.envoyExtAuthzHttp.{field}"] = _helm_value(value)
    return out
