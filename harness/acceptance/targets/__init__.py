"""Targets: where the platform runs. Steps talk to a target only through :class:`Target` and the capability
interfaces it implements (:func:`need`)."""

from __future__ import annotations

from harness.acceptance.targets.base import (
    CAPABILITIES,
    TAGS,
    Capability,
    Cluster,
    Gateway,
    Jobs,
    Models,
    Rollout,
    Target,
    TargetOptions,
    WorkerKill,
    log_events,
    need,
    skip_reason,
)
from harness.acceptance.targets.kind import KindTarget
from harness.acceptance.targets.kube import ClusterTarget
from harness.acceptance.targets.local import LocalTarget
from harness.errors import HarnessError

TARGETS: dict[str, type[Target]] = {"local": LocalTarget, "kind": KindTarget, "cluster": ClusterTarget}


def target_class(name: str) -> type[Target]:
    try:
        return TARGETS[name]
    except KeyError:
        raise HarnessError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


__all__ = [
    "CAPABILITIES", "TAGS", "TARGETS", "Capability", "Cluster", "Gateway", "Jobs", "Models", "Rollout", "Target",
    "TargetOptions", "WorkerKill", "log_events", "need", "skip_reason", "target_class",
]  # fmt: skip
