"""Targets: where the platform runs. Steps talk to a target only through :class:`Target`."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.targets.base import CAPABILITIES, Target, TargetOptions
from harness.targets.kind import KindTarget
from harness.targets.kube import ClusterTarget
from harness.targets.local import LocalTarget

TARGETS: dict[str, type[Target]] = {"local": LocalTarget, "kind": KindTarget, "cluster": ClusterTarget}


def target_class(name: str) -> type[Target]:
    try:
        return TARGETS[name]
    except KeyError:
        raise HarnessError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


__all__ = ["CAPABILITIES", "TARGETS", "Target", "TargetOptions", "target_class"]
