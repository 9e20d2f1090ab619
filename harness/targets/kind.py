"""The kind target: a local kind cluster with the whole platform, provisioned by the harness."""

from __future__ import annotations

from typing import ClassVar

from harness.errors import TargetUnavailable
from harness.prom import Prometheus
from harness.targets.base import CAPABILITIES, Target


class KindTarget(Target):
    name = "kind"
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES

    def start(self) -> None:
        raise TargetUnavailable(
            "target kind: the features cannot drive a kind cluster yet (port-forwards, replica counts and "
            "worker control are not implemented); `harness kind up` provisions the platform for use by hand, "
            "and the local target runs the features: pytest features --target local"
        )

    def stop(self) -> None:
        return None

    def service_url(self) -> str:
        raise TargetUnavailable("target kind is not provisioned")

    def prometheus(self) -> Prometheus:
        raise TargetUnavailable("target kind is not provisioned")

    def logs(self, component: str) -> str:
        raise TargetUnavailable("target kind is not provisioned")
