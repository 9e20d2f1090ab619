"""The one small interface between the steps and wherever the platform runs.

Steps reach the platform only through these methods, and each method is one a Kubernetes cluster can
honour as well as local processes: URLs, API keys, PromQL, logs, replica counts, and queue facts read by
the service's own admin command (``python -m service.jobs_admin``) where the API runs, never by importing
the service's queue code into the test process.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError, TargetUnavailable
from harness.prom import Prometheus

# Every capability a scenario can ask for with a tag of the same name.
# "models": the OCR model and the layout model, each in a service of its own (``Target.model_url``).
# "drain": a rollout reports each old replica's drain as watched from outside it (its /readyz, the gateway's
# rotation, when it stopped listening and exited: ``roll_out``'s "drain" events).
# "sigkill": a worker's process killed with SIGKILL itself (``stop_worker(graceful=False)``), not a pod deleted
# with no grace period, for which the kubelet still sends SIGTERM first (``delete_worker_pod_now``).
CAPABILITIES = frozenset(
    {"k8s", "hpa", "istio", "gateway", "ratelimit", "keda", "knative", "prometheus", "jobs", "models", "drain",
     "sigkill"}
)  # fmt: skip
# Components a step may name; each target maps them to its processes or workloads.
COMPONENTS = ("service", "predictor", "worker", "redis", "prometheus", "gateway")


@dataclass(frozen=True)
class TargetOptions:
    artifacts: Path
    keep: bool = False
    kube_context: str | None = None
    profile: str | None = None  # the platform profile a cluster target deploys or expects


class Target(abc.ABC):
    """A place where the platform runs. Capabilities are known before it starts (from the class, or from
    the profile it will deploy), so scenarios it cannot serve are skipped at collection."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: TargetOptions) -> None:
        self.options = options
        # What a scenario changed on a platform that outlives it, undone last-first when it ends.
        self._undo: list[tuple[str, Callable[[], None]]] = []

    @classmethod
    def provides(cls, options: TargetOptions) -> frozenset[str]:
        """The capabilities this target will have with these options."""
        return cls.capabilities

    @classmethod
    def skip_reason(cls, options: TargetOptions, needed: set[str], milestones: set[str]) -> str | None:
        missing = sorted(needed - cls.provides(options))
        if not missing:
            return None
        return f"needs {', '.join(missing)}; target {cls.name} does not provide {'it' if len(missing) == 1 else 'them'}"

    @abc.abstractmethod
    def start(self) -> None:
        """Bring the platform up (or connect to it) and wait until it serves."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Tear down what ``start`` made, in reverse order, unless asked to keep it."""

    def scenario_finished(self) -> None:
        """Undo what a scenario changed on a platform that outlives it (paused autoscalers, test pods, a
        stopped authorizer), last change first; an undo that fails is said and the others still run."""
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except HarnessError as exc:
                print(f"harness: could not undo {what}: {exc}")

    # -- reaching the service -----------------------------------------------------------------------

    @abc.abstractmethod
    def service_url(self) -> str:
        """Base URL of the OCR service as clients reach it directly (no gateway)."""

    def model_url(self, model: str) -> str:
        """Base URL of the service serving ``model`` (``ocr``: ``service_url``; ``layout``: its own)."""
        if model == "ocr":
            return self.service_url()
        raise TargetUnavailable(f"target {self.name} serves no model {model!r} directly")

    def service_headers(self) -> dict[str, str]:
        """Headers every direct request needs (a Host header where routing needs one)."""
        return {}

    def gateway_url(self) -> str:
        """Base URL of the ingress gateway, where API keys and rate limits apply."""
        raise TargetUnavailable(f"target {self.name} has no gateway")

    def host_header(self) -> str | None:
        """The Host header that routes a gateway request to the service, where one is needed."""
        return None

    def describe_gateway(self) -> str | None:
        """What serves as the gateway (for the run's summary), or None without one."""
        return None

    def load_endpoint(self) -> tuple[str, dict[str, str]]:
        """Where load goes, and its headers, so that it spreads over every ready replica (what autoscaling
        needs to show): the service itself unless the target knows a balancing way in."""
        return self.service_url(), self.service_headers()

    def alternate_hosts(self) -> list[str]:
        """Other host names the gateway serves (another model's): one API key's limit covers them all."""
        return []

    def stop_rate_limit_service(self) -> str:
        """Take the gateway's rate-limit service away until the scenario ends; what was stopped."""
        raise TargetUnavailable(f"target {self.name} has no separate rate-limit service (its limiter is in-process)")

    def stop_api_key_authorizer(self) -> str:
        """Take the gateway's API-key authorizer away until the scenario ends; what was stopped."""
        raise TargetUnavailable(f"target {self.name} has no separate API-key authorizer (its gateway checks keys)")

    def api_keys(self) -> dict[str, str]:
        """API keys provisioned for named clients (e.g. "team-a")."""
        raise TargetUnavailable(f"target {self.name} provisions no API keys")

    # -- observing ------------------------------------------------------------------------------------

    @abc.abstractmethod
    def prometheus(self) -> Prometheus:
        """Query access to the Prometheus that scrapes the platform."""

    @abc.abstractmethod
    def scrape_job(self, component: str) -> str:
        """The Prometheus ``job`` label of a component's series (it differs between targets)."""

    @abc.abstractmethod
    def logs(self, component: str) -> str:
        """Everything the component has logged so far (all its processes or pods)."""

    def log_events(self, component: str) -> list[dict[str, Any]]:
        """The component's structured (JSON) log lines; other lines are passed over."""
        events = []
        for line in self.logs(component).splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(entry, dict):
                events.append(entry)
        return events

    def replicas(self, component: str) -> int:
        """Ready replicas of a component; -1 when the target cannot tell yet (a status older than its spec)."""
        raise TargetUnavailable(f"target {self.name} does not report replicas")

    # -- rollouts -------------------------------------------------------------------------------------

    def ensure_service_replicas(self, count: int) -> int:
        """Hold at least ``count`` ready replicas of the predictor behind the gateway (until the scenario
        ends); how many serve."""
        raise TargetUnavailable(f"target {self.name} cannot run several replicas of the predictor")

    def roll_out(self, version: str, *, timeout: float) -> dict[str, Any]:
        """Roll every replica of the predictor to model ``version`` as the platform does (one at a time, the
        old one drained), and return what was seen; raises WaitTimeout past ``timeout`` seconds."""
        raise TargetUnavailable(f"target {self.name} cannot roll the predictor out")

    def scaling(self, component: str) -> dict[str, Any]:
        """What the component's autoscaler sees (bounds, desired, metric), for the evidence."""
        return {"ready": self.replicas(component)}

    # -- the job path -------------------------------------------------------------------------------

    def jobs_admin(self, *args: str, input: bytes | None = None) -> str:
        """Run ``python -m service.jobs_admin ARGS`` where the API runs; its stdout."""
        raise TargetUnavailable(f"target {self.name} gives no access to the job queue")

    def _admin_json(self, *args: str, input: bytes | None = None) -> dict[str, Any]:
        out = self.jobs_admin(*args, input=input)
        try:
            value = json.loads(out)
        except ValueError as exc:
            raise HarnessError(f"service.jobs_admin {' '.join(args)} printed no JSON: {out[:300]!r}") from exc
        if not isinstance(value, dict):
            raise HarnessError(f"service.jobs_admin {' '.join(args)} printed {value!r}")
        return value

    def queue_stats(self) -> dict[str, Any]:
        """Lag, pending entries, entries ever added, dead letters: what the queue holds now."""
        return self._admin_json("stats")

    def queue_lag(self) -> int | None:
        """Entries not yet delivered to the workers' consumer group (what KEDA reads)."""
        lag = self.queue_stats().get("lag")
        return None if lag is None else int(lag)

    def entries_added(self) -> int:
        """Entries ever added to the job stream: grows by one per job queued, even once it is taken."""
        return int(self.queue_stats()["entries_added"])

    def dead_letters(self, limit: int = 100) -> list[str]:
        """Ids of the jobs that most recently ended failed, newest first."""
        return [str(x) for x in self._admin_json("stats", "--limit", str(limit))["dead_letter_ids"]]

    def inject_job(self, data: bytes) -> str:
        """Queue raw bytes as a job, past the API's validation (how a damaged record is made); its id."""
        return str(self._admin_json("inject", input=data)["job_id"])

    def job_worker(self, job_id: str) -> str | None:
        """The worker that last ran a job."""
        worker = self._admin_json("job", job_id).get("worker")
        return None if worker is None else str(worker)

    def workers(self) -> list[str]:
        """Names of the running job workers."""
        raise TargetUnavailable(f"target {self.name} runs no workers")

    def ensure_workers(self, count: int) -> list[str]:
        """Hold at least ``count`` workers running (until the scenario ends); returns their names."""
        raise TargetUnavailable(f"target {self.name} cannot start workers")

    def stop_worker(self, name: str, *, graceful: bool) -> None:
        """SIGTERM (graceful) or SIGKILL one worker's process."""
        raise TargetUnavailable(f"target {self.name} cannot stop workers")

    def delete_worker_pod_now(self, name: str) -> None:
        """Delete a worker's pod with no grace period (the kubelet sends SIGTERM, then SIGKILL soon after)."""
        raise TargetUnavailable(f"target {self.name} runs no pods")

    def worker_exit_code(self, name: str, timeout: float) -> int:
        """Wait for a stopped worker to exit; its exit code."""
        raise TargetUnavailable(f"target {self.name} does not report exit codes")

    # -- the cluster itself ---------------------------------------------------------------------------

    def cluster_facts(self) -> dict[str, Any]:
        """Nodes (name, Ready), namespaces and node metrics: what a bootstrapped cluster shows."""
        raise TargetUnavailable(f"target {self.name} is not a Kubernetes cluster")

    def inference_service(self) -> dict[str, Any]:
        """The InferenceService's state: Ready, URLs, deployment mode, conditions not yet true."""
        raise TargetUnavailable(f"target {self.name} runs no InferenceService")

    def call_from_pod(self, *, in_mesh: bool, service_account: str, path: str = "/readyz") -> dict[str, Any]:
        """GET the predictor from a throwaway pod (inside or outside the mesh, with a service account): what
        :func:`harness.kube.probe.probe` saw there, ``outcome`` first (an HTTP answer, or which step failed)."""
        raise TargetUnavailable(f"target {self.name} cannot start probe pods")

    def collect_evidence(self, dest: Path) -> None:
        """Copy logs and state useful after a failure into ``dest``. Called before teardown."""
        dest.mkdir(parents=True, exist_ok=True)
