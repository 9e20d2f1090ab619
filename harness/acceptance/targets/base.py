"""The one small interface between the steps and wherever the platform runs, and the capabilities a target may add.

:class:`Target` is the core every target has: its life cycle, where the OCR service answers, and what there is
to observe (Prometheus, logs, evidence). What only some targets have is a capability interface that a target
implements or not: a gateway with API keys, the job path, rollouts, the models' own services, the cluster's
objects. A scenario's tags name what it needs; a tag belongs to the interface that serves it (its ``tags``), so
what a target provides is read from the interfaces it implements, narrowed on a cluster to what the deployed
profile installed.

Each method is one a Kubernetes cluster can honour as well as local processes: URLs, API keys, PromQL, logs,
replica counts, and queue facts read by the service's own admin command (``python -m service.jobs.admin``)
where the API runs, never by importing the service's queue code into the test process.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.acceptance.prom import Prometheus
from harness.errors import HarnessError, TargetUnavailable
from harness.provisioning import profiles
from harness.provisioning.profiles import Profile

# Components a step may name; each target maps them to its processes or workloads.
COMPONENTS = ("service", "predictor", "worker", "redis", "prometheus", "gateway")
# The tag every target serves: its Prometheus (a core method).
CORE_TAGS = frozenset({"prometheus"})


@dataclass(frozen=True)
class TargetOptions:
    artifacts: Path
    keep: bool = False
    kube_context: str | None = None
    profile: str | None = None  # the platform profile a cluster target deploys or expects


class Target(abc.ABC):
    """A place where the platform runs: the core every target has. What it provides is known before it starts
    (from the interfaces its class implements, and on a cluster the profile it will deploy), so scenarios it
    cannot serve are skipped at collection."""

    name: ClassVar[str]

    def __init__(self, options: TargetOptions) -> None:
        self.options = options
        # What a scenario changed on a platform that outlives it, undone last-first when it ends.
        self._undo: list[tuple[str, Callable[[], None]]] = []

    @classmethod
    def provides(cls, options: TargetOptions) -> frozenset[str]:
        """The tags this target serves with these options: those of every capability it implements."""
        return CORE_TAGS | frozenset(tag for klass in cls.__mro__ for tag in vars(klass).get("tags", ()))

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

    @abc.abstractmethod
    def service_url(self) -> str:
        """Base URL of the OCR service as clients reach it directly (no gateway)."""

    def service_headers(self) -> dict[str, str]:
        """Headers every direct request needs (a Host header where routing needs one)."""
        return {}

    @abc.abstractmethod
    def prometheus(self) -> Prometheus:
        """Query access to the Prometheus that scrapes the platform."""

    @abc.abstractmethod
    def scrape_job(self, component: str) -> str:
        """The Prometheus ``job`` label of a component's series (it differs between targets)."""

    @abc.abstractmethod
    def logs(self, component: str) -> str:
        """Everything the component has logged so far (all its processes or pods)."""

    def collect_evidence(self, dest: Path) -> None:
        """Copy logs and state useful after a failure into ``dest``. Called before teardown."""
        dest.mkdir(parents=True, exist_ok=True)


def log_events(target: Target, component: str) -> list[dict[str, Any]]:
    """The component's structured (JSON) log lines; other lines are passed over."""
    events = []
    for line in target.logs(component).splitlines():
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


# -- capabilities --------------------------------------------------------------------------------------------


class Capability:
    """A part of the platform that some targets have. ``tags``: the scenario tags it serves."""

    tags: ClassVar[frozenset[str]] = frozenset()


class Models(Capability):
    """The OCR model and the layout model ("models"), and the table model ("tables"), each in a service of
    its own and each with a host of its own on the gateway."""

    tags = frozenset({"models", "tables"})

    @abc.abstractmethod
    def model_url(self, model: str) -> str:
        """Base URL of the service serving ``model`` (``ocr``: ``service_url``; ``layout``, ``table``: its own)."""

    @abc.abstractmethod
    def model_host(self, model: str) -> str:
        """The Host header that routes a gateway request to ``model``'s service."""


class Gateway(Capability):
    """The ingress gateway: API keys checked by the platform's authorizer, a rate limit per key."""

    tags = frozenset({"gateway", "ratelimit"})

    @abc.abstractmethod
    def gateway_url(self) -> str:
        """Base URL of the ingress gateway, where API keys and rate limits apply."""

    def host_header(self) -> str | None:
        """The Host header that routes a gateway request to the service, where one is needed."""
        return None

    def alternate_hosts(self) -> list[str]:
        """Other host names the gateway serves (another model's): one API key's limit covers them all."""
        return []

    @abc.abstractmethod
    def describe_gateway(self) -> str | None:
        """What serves as the gateway (for the run's summary); None where the deployed profile has none."""

    @abc.abstractmethod
    def api_keys(self) -> dict[str, str]:
        """API keys provisioned for named clients (e.g. "team-a")."""

    @abc.abstractmethod
    def stop_api_key_authorizer(self) -> str:
        """Take the gateway's API-key authorizer away until the scenario ends; what was stopped."""


class Rollout(Capability):
    """Several replicas of the predictor behind the gateway, rolled to a new model version one at a time.
    "drain": each old replica's drain watched from outside it (its /readyz, the gateway's rotation, when it
    stopped listening and exited); a cluster shows the capacity kept and its pods' handover instead."""

    tags = frozenset({"drain"})

    @abc.abstractmethod
    def replicas(self, component: str) -> int:
        """Ready replicas of a component; -1 when the target cannot tell yet (a status older than its spec)."""

    @abc.abstractmethod
    def ensure_service_replicas(self, count: int) -> int:
        """Hold at least ``count`` ready replicas of the predictor behind the gateway (until the scenario
        ends); how many serve."""

    @abc.abstractmethod
    def roll_out(self, version: str, *, timeout: float) -> dict[str, Any]:
        """Roll every replica of the predictor to model ``version`` as the platform does (one at a time, the
        old one drained), and return what was seen; raises WaitTimeout past ``timeout`` seconds."""


class Jobs(Capability):
    """The job path: the queue (read through ``python -m service.jobs.admin`` where the API runs) and its
    workers."""

    tags = frozenset({"jobs"})

    @abc.abstractmethod
    def jobs_admin(self, *args: str, input: bytes | None = None) -> str:
        """Run ``python -m service.jobs.admin ARGS`` where the API runs; its stdout."""

    @abc.abstractmethod
    def workers(self) -> list[str]:
        """Names of the running job workers."""

    @abc.abstractmethod
    def ensure_workers(self, count: int) -> list[str]:
        """Hold at least ``count`` workers running (until the scenario ends); returns their names."""

    @abc.abstractmethod
    def stop_worker(self, name: str) -> None:
        """Stop one worker as the platform does (SIGTERM: it finishes its job, then exits)."""

    @abc.abstractmethod
    def worker_exit_code(self, name: str, timeout: float) -> int:
        """Wait for a stopped worker to exit; its exit code."""

    def queue_stats(self) -> dict[str, Any]:
        """Lag, pending entries, entries ever added, dead letters: what the queue holds now."""
        return queue_json(self, "stats")

    def queue_lag(self) -> int | None:
        """Entries not yet delivered to the workers' consumer group (what KEDA reads)."""
        lag = self.queue_stats().get("lag")
        return None if lag is None else int(lag)

    def entries_added(self) -> int:
        """Entries ever added to the job stream: grows by one per job queued, even once it is taken."""
        return int(self.queue_stats()["entries_added"])

    def dead_letters(self, limit: int = 100) -> list[str]:
        """Ids of the jobs that most recently ended failed, newest first."""
        return [str(x) for x in queue_json(self, "stats", "--limit", str(limit))["dead_letter_ids"]]

    def inject_job(self, data: bytes) -> str:
        """Queue raw bytes as a job, past the API's validation (how a damaged record is made); its id."""
        return str(queue_json(self, "inject", input=data)["job_id"])

    def job_worker(self, job_id: str) -> str | None:
        """The worker that last ran a job."""
        worker = queue_json(self, "job", job_id).get("worker")
        return None if worker is None else str(worker)


class WorkerKill(Jobs):
    """A worker's process killed with SIGKILL itself (as in an OOM kill), not a pod deleted with no grace
    period, for which the kubelet still sends SIGTERM first."""

    tags = frozenset({"sigkill"})

    @abc.abstractmethod
    def kill_worker(self, name: str) -> None:
        """SIGKILL one worker's process."""


class Cluster(Rollout):
    """A Kubernetes cluster: its objects, its autoscalers, probe pods, the mesh; what it serves is what the
    deployed profile installed (:attr:`profile`)."""

    tags = frozenset({"k8s", "hpa", "istio", "keda", "knative"})
    profile: Profile

    @classmethod
    @abc.abstractmethod
    def deployed(cls, options: TargetOptions) -> Profile:
        """The profile this target deploys or expects with these options."""

    @abc.abstractmethod
    def cluster_facts(self) -> dict[str, Any]:
        """Nodes (name, Ready), namespaces and node metrics: what a bootstrapped cluster shows."""

    @abc.abstractmethod
    def inference_service(self) -> dict[str, Any]:
        """The InferenceService's state: Ready, URLs, deployment mode, conditions not yet true."""

    @abc.abstractmethod
    def call_from_pod(self, *, in_mesh: bool, service_account: str, path: str = "/readyz") -> dict[str, Any]:
        """GET the predictor from a throwaway pod (inside or outside the mesh, with a service account): what
        :func:`harness.provisioning.kube.probe.probe` saw there, ``outcome`` first (an HTTP answer, or which
        step failed)."""

    @abc.abstractmethod
    def scaling(self, component: str) -> dict[str, Any]:
        """What the component's autoscaler sees (bounds, desired, metric), for the evidence."""

    @abc.abstractmethod
    def load_endpoint(self) -> tuple[str, dict[str, str]]:
        """Where load goes, and its headers, so that it spreads over every ready replica (what autoscaling
        needs to show)."""

    @abc.abstractmethod
    def delete_worker_pod_now(self, name: str) -> None:
        """Delete a worker's pod with no grace period (the kubelet sends SIGTERM, then SIGKILL soon after)."""

    @abc.abstractmethod
    def stop_rate_limit_service(self) -> str:
        """Take the gateway's rate-limit service away until the scenario ends; what was stopped."""

    @abc.abstractmethod
    def newest_pod_start(self, component: str) -> dict[str, Any] | None:
        """The component's newest pod's start as the API shows it (created, scheduled, containers started,
        Ready: seconds since the epoch), or None without pods."""


CAPABILITIES: tuple[type[Capability], ...] = (Models, Gateway, Rollout, Jobs, WorkerKill, Cluster)
# Every tag a scenario can carry to say what it needs of its target (pytest markers of the same names).
TAGS = CORE_TAGS | frozenset(tag for capability in CAPABILITIES for tag in capability.tags)

C = TypeVar("C", bound=Capability)


def need(target: Target, capability: type[C]) -> C:
    """``target`` as the capability a step uses; a clear error where it has none (a scenario not tagged for
    it, since tagged ones are skipped on such a target)."""
    if not isinstance(target, capability):
        raise TargetUnavailable(f"target {target.name} has no {capability.__name__.lower()} capability")
    return target


def skip_reason(target: type[Target], options: TargetOptions, needed: set[str], milestones: set[str]) -> str | None:
    """Why ``target`` with ``options`` cannot run a scenario tagged ``needed`` and ``milestones``, or None."""
    if issubclass(target, Cluster):
        own = needed & profiles.TARGET_OWN
        if missing := sorted(own - target.provides(options)):
            return (
                f"needs {', '.join(missing)}: target {target.name} cannot signal a container's process (kind does, "
                "through its node's container runtime; a pod deleted with no grace period is its own scenario)"
            )
        return profiles.skip_reason(target.deployed(options), milestones, needed - own)
    missing = sorted(needed - target.provides(options))
    if not missing:
        return None
    return f"needs {', '.join(missing)}; target {target.name} does not provide {'it' if len(missing) == 1 else 'them'}"


def queue_json(jobs: Jobs, *args: str, input: bytes | None = None) -> dict[str, Any]:
    """What ``service.jobs.admin ARGS`` printed, as a JSON object."""
    out = jobs.jobs_admin(*args, input=input)
    try:
        value = json.loads(out)
    except ValueError as exc:
        raise HarnessError(f"service.jobs.admin {' '.join(args)} printed no JSON: {out[:300]!r}") from exc
    if not isinstance(value, dict):
        raise HarnessError(f"service.jobs.admin {' '.join(args)} printed {value!r}")
    return value
