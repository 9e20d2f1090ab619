"""The cluster target: an existing cluster reached through a kubeconfig context."""

from __future__ import annotations

from typing import ClassVar

from harness.errors import TargetUnavailable
from harness.prom import Prometheus
from harness.targets.base import CAPABILITIES, Target


class ClusterTarget(Target):
    name = "cluster"
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES

    def start(self) -> None:
        context = self.options.kube_context or "(current context)"
        raise TargetUnavailable(
            f"target cluster ({context}): connecting to an existing cluster is not implemented yet; "
            "run the local target (pytest features --target local)"
        )

    def stop(self) -> None:
        return None

    def service_url(self) -> str:
        raise TargetUnavailable("target cluster is not connected")

    def prometheus(self) -> Prometheus:
        raise TargetUnavailable("target cluster is not connected")

    def logs(self, component: str) -> str:
        raise TargetUnavailable("target cluster is not connected")
