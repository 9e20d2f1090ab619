"""The one small interface between the steps and wherever the platform runs."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.errors import TargetUnavailable
from harness.prom import Prometheus
from service.jobs import JobStore

# Every capability a scenario can ask for with a tag of the same name.
CAPABILITIES = frozenset({"k8s", "hpa", "istio", "ratelimit", "keda", "knative", "prometheus", "jobs"})


@dataclass(frozen=True)
class TargetOptions:
    artifacts: Path
    keep: bool = False
    kube_context: str | None = None


class Target(abc.ABC):
    """A place where the platform runs. Capabilities are declared on the class, known before it starts."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    @classmethod
    def missing(cls, needed: set[str]) -> list[str]:
        """The capabilities in ``needed`` that this target does not provide, sorted."""
        return sorted(needed - cls.capabilities)

    @classmethod
    def skip_reason(cls, needed: set[str]) -> str | None:
        missing = cls.missing(needed)
        if not missing:
            return None
        return f"needs {', '.join(missing)}; target {cls.name} does not provide {'it' if len(missing) == 1 else 'them'}"

    @abc.abstractmethod
    def start(self) -> None:
        """Bring the platform up (or connect to it) and wait until it serves."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Tear down what ``start`` made, in reverse order, unless asked to keep it."""

    @abc.abstractmethod
    def service_url(self) -> str:
        """Base URL of the OCR service as clients reach it directly (no gateway)."""

    def gateway_url(self) -> str:
        """Base URL of the ingress gateway, where API keys and rate limits apply."""
        raise TargetUnavailable(f"target {self.name} has no gateway")

    def host_header(self) -> str | None:
        """The Host header that routes a gateway request to the service, where one is needed."""
        return None

    def api_keys(self) -> dict[str, str]:
        """API keys provisioned for named clients (e.g. "team-a")."""
        raise TargetUnavailable(f"target {self.name} provisions no API keys")

    @abc.abstractmethod
    def prometheus(self) -> Prometheus:
        """Query access to the Prometheus that scrapes the platform."""

    @abc.abstractmethod
    def logs(self, component: str) -> str:
        """Everything the component has logged so far (all its processes or pods)."""

    def replicas(self, component: str) -> int:
        """Ready replicas of a component."""
        raise TargetUnavailable(f"target {self.name} does not report replicas")

    # -- the job path -------------------------------------------------------------------------------

    def job_store(self) -> JobStore:
        """Direct access to the job queue and store (what the workers see)."""
        raise TargetUnavailable(f"target {self.name} gives no access to the job store")

    def queue_lag(self) -> int | None:
        """Entries not yet delivered to the workers' consumer group."""
        return self.job_store().lag()

    def workers(self) -> list[str]:
        """Names of the running job workers."""
        raise TargetUnavailable(f"target {self.name} runs no workers")

    def ensure_workers(self, count: int) -> list[str]:
        """Start workers until ``count`` run; returns their names."""
        raise TargetUnavailable(f"target {self.name} cannot start workers")

    def stop_worker(self, name: str, *, graceful: bool) -> None:
        """SIGTERM (graceful) or SIGKILL one worker."""
        raise TargetUnavailable(f"target {self.name} cannot stop workers")

    def worker_exit_code(self, name: str, timeout: float) -> int:
        """Wait for a stopped worker to exit; its exit code."""
        raise TargetUnavailable(f"target {self.name} does not report exit codes")

    def collect_evidence(self, dest: Path) -> None:
        """Copy logs and state useful after a failure into ``dest``. Called before teardown."""
        dest.mkdir(parents=True, exist_ok=True)
