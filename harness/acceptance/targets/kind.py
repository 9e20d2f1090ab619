"""The kind target: a local kind cluster with the platform, provisioned by the harness when missing.

``start`` provisions what the selected scenarios' profile needs through the same functions as
``harness up`` (steps already done are skipped, so a cluster that has the platform is reused quickly),
then waits for the InferenceService. ``stop`` deletes the cluster only when this run created it and
``--keep`` was not given; its logs are exported first.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import commands, wait
from harness.acceptance.targets.base import TargetOptions, WorkerKill
from harness.acceptance.targets.kube import APP_NAMESPACE, WORKLOADS, ClusterTarget
from harness.errors import HarnessError, TargetUnavailable
from harness.ports import LOOPBACK, free_port
from harness.provisioning.env import WORK_DIR, export_logs, gateway_host_port, provision, teardown
from harness.provisioning.kube import facts
from harness.provisioning.plan import CLUSTER
from harness.provisioning.run import kind_clusters
from harness.provisioning.spec import Spec
from harness.provisioning.tools import resolve

SIGKILL_SEEN_TIMEOUT_S = 60


def node_kill_commands(node: str, container_id: str) -> tuple[list[str], list[str]]:
    """The two commands that SIGKILL a container's process on a kind node: ask the node's containerd (crictl)
    for the process's pid, then signal it from the node's PID namespace, the parent of the container's (a
    process inside the container could not: the kernel ignores SIGKILL sent to a namespace's init from within)."""
    inspect = ["docker", "exec", node, "crictl", "inspect", container_id]
    kill = ["docker", "exec", node, "sh", "-c", 'kill -KILL "$1"', "kill"]  # the pid is appended
    return inspect, kill


class KindTarget(ClusterTarget, WorkerKill):
    name = "kind"

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(options)
        self.cluster = CLUSTER
        self._created = False
        self._kind_logs_exported = False

    @classmethod
    def provides(cls, options: TargetOptions) -> frozenset[str]:
        """The cluster's, and SIGKILL through a node's container runtime wherever the profile runs workers."""
        caps = super().provides(options)
        return caps | {"sigkill"} if "jobs" in caps else caps

    def kill_worker(self, name: str) -> None:
        # A real SIGKILL: the worker's process dies without a word, as in an OOM kill or a node's crash; the
        # kubelet then restarts the container in the same pod.
        self._follow("worker")
        container = WORKLOADS["worker"][2]
        pod = self.kube.pod(APP_NAMESPACE, name)
        where = facts.container_on_node(pod, container)
        if where is None:
            raise HarnessError(f"worker {name} has no running container on a node yet: {pod.get('status')}")
        restarts = facts.container_restarts(pod, container)
        inspect, kill = node_kill_commands(*where)
        found = json.loads(commands.run([resolve("docker"), *inspect[1:]], timeout=30))
        pid = int((found.get("info") or {}).get("pid") or 0)
        if pid <= 1:
            raise HarnessError(f"crictl on {where[0]} reports no pid for container {where[1]}: {found.get('info')}")
        commands.run([resolve("docker"), *kill[1:], str(pid)], timeout=30)
        # Proof that it was a SIGKILL: the kubelet reports the container's last run ended with 137.
        wait.until(
            lambda: self.kube.pod(APP_NAMESPACE, name),
            lambda p: facts.killed_by_sigkill(p, container, restarts),
            timeout=SIGKILL_SEEN_TIMEOUT_S, interval=1,
            what=f"worker {name}'s container restarted after SIGKILL (last exit code 137)",
        )  # fmt: skip

    @property
    def context(self) -> str:
        return f"kind-{self.cluster}"

    def spec(self) -> Spec:
        port = gateway_host_port(self.cluster) or free_port()
        # The same work folder as `harness up` uses for this cluster, so both find each other's files.
        return Spec(profile=self.profile, work_dir=WORK_DIR / self.cluster, cluster=self.cluster, host_port=port)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec()
        existed = self._cluster_exists()
        provision(spec, log_dir=self.options.artifacts / "platform", say=lambda line: print(f"harness: {line}"))
        self._created = not existed
        super().start()

    def _cluster_exists(self) -> bool:
        try:
            return self.cluster in kind_clusters()
        except HarnessError:  # no kind yet: provision's preflight names it
            return False

    def gateway_url(self) -> str:
        if "istio" not in self.profile.addons:
            raise TargetUnavailable(f"the {self.profile.name} profile has no ingress gateway")
        port = gateway_host_port(self.cluster)
        if port is None:
            raise TargetUnavailable(
                f"kind cluster {self.cluster} publishes no gateway port (recreate it with harness up)"
            )
        return f"http://{LOOPBACK}:{port}"

    def collect_evidence(self, dest: Path) -> None:
        super().collect_evidence(dest)
        # The nodes' own logs (kubelet, containerd) once per run: the export takes a while.
        if not self._kind_logs_exported:
            self._kind_logs_exported = True
            export_logs(self.spec(), self.options.artifacts / "platform" / "kind-logs-at-first-failure")

    def stop(self) -> None:
        super().stop()
        if self._created and not self.options.keep:
            teardown(self.spec(), log_dir=self.options.artifacts / "platform" / "teardown-logs")
        elif self._created:
            print(f"harness: --keep: leaving kind cluster {self.cluster} running (harness down deletes it)")
