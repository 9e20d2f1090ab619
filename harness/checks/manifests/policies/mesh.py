"""Rules of the Istio mesh: STRICT mTLS everywhere, deny by default, sidecars injected, API keys checked at the
edge."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning import extauthz
from harness.provisioning.objects import Finding, Obj, dig, find, finding, is_workload

MESH_ROOT_NAMESPACE = "istio-system"
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
RENDER = "(render)"


def workload_namespaces(objects: Sequence[Obj]) -> list[str]:
    """Namespaces in which the render runs containers."""
    return sorted({str(dig(obj, "metadata", "namespace")) for obj in objects if is_workload(obj)} - {"None"})


@rule("mtls-strict", when=lambda p: p.mesh)
def mtls_strict(ctx: Context) -> Iterator[Finding]:
    """Mesh-wide STRICT mTLS (PeerAuthentication default in istio-system), and no policy that relaxes a whole
    workload or namespace (only port-level exceptions are allowed, each documented where it is declared)."""
    policies = find(ctx.objects, "PeerAuthentication")
    roots = [
        p
        for p in policies
        if dig(p, "metadata", "name") == "default"
        and dig(p, "metadata", "namespace") == MESH_ROOT_NAMESPACE
        and not dig(p, "spec", "selector")
    ]
    if not roots:
        yield finding(RENDER, "mtls-strict", f"no mesh-wide PeerAuthentication 'default' in {MESH_ROOT_NAMESPACE}")
    for policy in roots:
        if dig(policy, "spec", "mtls", "mode") != "STRICT":
            yield finding(
                policy, "mtls-strict", f"mode is {dig(policy, 'spec', 'mtls', 'mode')!r}, not STRICT", "spec.mtls.mode"
            )
    for policy in policies:
        if policy in roots:
            continue
        mode = dig(policy, "spec", "mtls", "mode")
        if mode in ("PERMISSIVE", "DISABLE"):
            yield finding(policy, "mtls-strict", f"mode {mode} relaxes mTLS for whole workloads", "spec.mtls.mode")


def is_deny_all(policy: Obj) -> bool:
    """An AuthorizationPolicy with an empty spec: ALLOW with no rules, which matches (allows) nothing."""
    return policy.get("spec") in (None, {})


@rule("deny-all", when=lambda p: p.mesh)
def deny_all(ctx: Context) -> Iterator[Finding]:
    """Every namespace that runs workloads has a deny-all AuthorizationPolicy (empty spec)."""
    for namespace in workload_namespaces(ctx.objects):
        if not any(is_deny_all(p) for p in find(ctx.objects, "AuthorizationPolicy", namespace=namespace)):
            yield finding(
                f"Namespace/{namespace}",
                "deny-all",
                "runs workloads but has no deny-all AuthorizationPolicy (spec: {})",
            )


@rule("sidecar-injection", when=lambda p: p.mesh)
def sidecar_injection(ctx: Context) -> Iterator[Finding]:
    """Every namespace that runs workloads is labelled for sidecar injection and no pod opts out: without
    sidecars, STRICT mTLS and the authorization policies are not enforced."""
    for namespace in workload_namespaces(ctx.objects):
        found = find(ctx.objects, "Namespace", namespace)
        labels = (dig(found[0], "metadata", "labels") or {}) if found else {}
        if not found:
            yield finding(f"Namespace/{namespace}", "sidecar-injection", "runs workloads but is not in the render")
        elif labels.get("istio-injection") != "enabled" and not labels.get("istio.io/rev"):
            yield finding(
                found[0], "sidecar-injection", "no istio-injection: enabled label", "metadata.labels[istio-injection]"
            )
    for obj in ctx.objects:
        if not is_workload(obj):
            continue
        meta = ("spec", "predictor") if obj.get("kind") == "InferenceService" else ("spec", "template", "metadata")
        for where in ("labels", "annotations"):
            values = dig(obj, *meta, where) or {}
            if str(values.get("sidecar.istio.io/inject", "")).lower() == "false":
                yield finding(
                    obj,
                    "sidecar-injection",
                    "pods opt out of sidecar injection",
                    f"{'.'.join(meta)}.{where}[sidecar.istio.io/inject]",
                )


def api_key_policies(objects: Sequence[Obj]) -> list[Obj]:
    """CUSTOM AuthorizationPolicies in istio-system that select the ingress gateway."""
    return [
        policy
        for policy in find(objects, "AuthorizationPolicy", namespace=MESH_ROOT_NAMESPACE)
        if dig(policy, "spec", "selector", "matchLabels") == GATEWAY_SELECTOR
        and dig(policy, "spec", "action") == "CUSTOM"
    ]


def _matches_everything(entry: Any) -> bool:
    """A rule with no from, to or when: it matches every request."""
    return isinstance(entry, dict) and not any(entry.get(field) for field in ("from", "to", "when"))


@rule("api-key-required", when=lambda p: p.mesh)
def api_key_required(ctx: Context) -> Iterator[Finding]:
    """The ingress gateway asks the API-key authorizer about every request: a CUSTOM AuthorizationPolicy in
    istio-system selecting the gateway, naming the extension provider the install plan gives istiod
    (harness/provisioning/extauthz.py), with a rule that matches every request (CUSTOM runs the check only for the
    requests its rules match; a request it does not match passes unchecked)."""
    policies = api_key_policies(ctx.objects)
    if not policies:
        yield finding(
            RENDER,
            "api-key-required",
            f"no CUSTOM AuthorizationPolicy in {MESH_ROOT_NAMESPACE} selecting istio=ingressgateway (the API-key"
            f" check by provider {extauthz.PROVIDER_NAME})",
        )
        return
    for policy in policies:
        provider = dig(policy, "spec", "provider", "name")
        if provider != extauthz.PROVIDER_NAME:
            yield finding(
                policy,
                "api-key-required",
                f"provider {provider!r} is not the API-key authorizer istiod knows ({extauthz.PROVIDER_NAME})",
                "spec.provider.name",
            )
        rules = dig(policy, "spec", "rules") or []
        if not any(_matches_everything(entry) for entry in rules):
            yield finding(
                policy,
                "api-key-required",
                "no rule matches every request ({}): requests outside its rules reach the service unchecked",
                "spec.rules",
            )
