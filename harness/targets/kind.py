"""The kind target: a local kind cluster with the platform, provisioned by the harness when missing.

``start`` provisions what the selected scenarios' profile needs through the same functions as
``harness up`` (steps already done are skipped, so a cluster that has the platform is reused quickly),
then waits for the InferenceService. ``stop`` deletes the cluster only when this run created it and
``--keep`` was not given; its logs are exported first.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError, TargetUnavailable
from harness.platform.env import WORK_DIR, export_logs, gateway_host_port, provision, teardown
from harness.platform.plan import CLUSTER, Spec
from harness.platform.run import kind_clusters
from harness.ports import LOOPBACK, free_port
from harness.targets.base import TargetOptions
from harness.targets.kube import ClusterTarget


class KindTarget(ClusterTarget):
    name = "kind"

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(options)
        self.cluster = CLUSTER
        self._created = False
        self._kind_logs_exported = False

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
