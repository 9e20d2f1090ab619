"""The platform's promises, checked on rendered objects.

Each rule is a function of a :class:`Context` that yields :class:`~harness.provisioning.objects.Finding`s naming
the object, the rule and the path. Rules register themselves with :func:`rule`, saying which overlay
profiles they apply to; :func:`check` runs every rule that applies. The rules, by module:

- ``workloads``: container-resources, container-probes, run-as-non-root, image-pinned, local-image-pull-policy
- ``namespaces``: namespace-set
- ``autoscaling``: isvc-scalable, keda-target, keda-stream, keda-lag-mode, keda-redis-address,
  worker-grace-period
- ``mesh``: mtls-strict, deny-all, sidecar-injection, api-key-required
- ``apikeys``: api-keys-hashed-only, authz-wiring
- ``ratelimit``: ratelimit-per-key, ratelimit-wiring
- ``redis``: redis-auth, redis-auth-shared, redis-network-policy, redis-memory
- ``tenant``: tenant-from-authorizer
- ``rollout``: rollout-readiness, rollout-prestop, rollout-grace-period, rollout-max-unavailable
- ``governance``: isvc-governance
"""

from __future__ import annotations

# Imported to register their rules.
from harness.checks.manifests.policies import (  # noqa: F401
    apikeys,
    autoscaling,
    governance,
    mesh,
    namespaces,
    ratelimit,
    redis,
    rollout,
    tenant,
    workloads,
)
from harness.checks.manifests.policies.base import RULES, Context, Rule, check, rule

__all__ = ["RULES", "Context", "Rule", "check", "rule"]
