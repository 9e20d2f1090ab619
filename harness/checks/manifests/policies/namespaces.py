"""Every namespaced object says which namespace it belongs to (none is left to kubectl's context)."""

from __future__ import annotations

from collections.abc import Iterator

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Finding, finding


@rule("namespace-set")
def namespace_set(ctx: Context) -> Iterator[Finding]:
    """Every object of a namespaced kind has metadata.namespace."""
    for obj in ctx.objects:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            continue
        if ctx.is_namespaced(api_version, kind) and not (obj.get("metadata") or {}).get("namespace"):
            yield finding(obj, "namespace-set", f"{kind} is namespaced but has no namespace", "metadata.namespace")
