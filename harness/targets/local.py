"""The local target: the platform's real processes on loopback (service, Redis, Prometheus, workers)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

from harness.components import Endpoint, start_prometheus, start_redis, start_service
from harness.errors import TargetUnavailable
from harness.processes import ManagedProcess, stop_all
from harness.prom import Prometheus
from harness.targets.base import Target, TargetOptions


class LocalTarget(Target):
    name = "local"
    capabilities: ClassVar[frozenset[str]] = frozenset({"prometheus", "jobs"})

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(options)
        self.log_dir = options.artifacts / "processes"
        self._work = Path(tempfile.mkdtemp(prefix="ocr-local-"))
        self._started: list[ManagedProcess] = []
        self.redis: Endpoint | None = None
        self.service: Endpoint | None = None
        self.prom: Endpoint | None = None

    def start(self) -> None:
        atexit.register(self.stop)
        try:
            self.redis = self._track(start_redis(self.log_dir, self._work / "redis"))
            self.service = self._track(
                start_service(self.log_dir, env={"OCR_REDIS_URL": self.redis_url, "OCR_SHUTDOWN_DRAIN_S": "0.5"})
            )
            self.prom = self._track(
                start_prometheus(self.log_dir, self._work / "prometheus", {"ocr-service": [self._addr(self.service)]})
            )
        except BaseException:
            self.stop()
            raise

    def _track(self, endpoint: Endpoint) -> Endpoint:
        self._started.append(endpoint.process)
        return endpoint

    @staticmethod
    def _addr(endpoint: Endpoint) -> str:
        return f"{endpoint.host}:{endpoint.port}"

    def stop(self) -> None:
        if self.options.keep:
            print(f"harness: --keep: leaving {[p.name for p in self._started if p.alive()]} running")
            return
        stop_all(self._started)
        self._started.clear()
        shutil.rmtree(self._work, ignore_errors=True)

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise TargetUnavailable("local target not started")
        return f"redis://{self.redis.host}:{self.redis.port}/0"

    def service_url(self) -> str:
        if self.service is None:
            raise TargetUnavailable("local target not started")
        return self.service.url

    def prometheus(self) -> Prometheus:
        if self.prom is None:
            raise TargetUnavailable("local target not started")
        return Prometheus(self.prom.url)

    def _processes(self, component: str) -> list[ManagedProcess]:
        found = [p for p in self._started if p.name == component or p.name.startswith(f"{component}-")]
        if not found:
            raise TargetUnavailable(
                f"no component {component!r} on target local; have {[p.name for p in self._started]}"
            )
        return found

    def logs(self, component: str) -> str:
        return "\n".join(p.log_text() for p in self._processes(component))

    def replicas(self, component: str) -> int:
        return sum(1 for p in self._processes(component) if p.alive())

    def collect_evidence(self, dest: Path) -> None:
        # Process logs already live under artifacts/<run>/processes; point at them from the scenario.
        dest.mkdir(parents=True, exist_ok=True)
        for process in self._started:
            if process.log_path.exists():
                shutil.copyfile(process.log_path, dest / process.log_path.name)
