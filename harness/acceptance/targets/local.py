"""The local target: the platform's real processes on loopback (service, Redis, Prometheus, workers, the
API-key authorizer the gateway asks, and a second service process serving the layout model)."""

from __future__ import annotations

import atexit
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness import commands, wait
from harness.acceptance.components import (
    Authorizer,
    Endpoint,
    prometheus_config,
    redis_url,
    start_authorizer,
    start_job_redis,
    start_prometheus,
    start_service,
    start_worker,
)
from harness.acceptance.gateway import Gateway, new_keys, server_name, start_gateway
from harness.acceptance.gateway import version as gateway_version
from harness.acceptance.prom import Prometheus
from harness.acceptance.targets import base, kept
from harness.acceptance.targets.base import Models, Rollout, Target, TargetOptions, WorkerKill
from harness.errors import TargetUnavailable
from harness.processes import ManagedProcess, ignored_settings, inherited_env, stop_all
from harness.provisioning import rules
from harness.provisioning.identity import gateway_host
from harness.provisioning.secrets import API_KEY_IDS

ADMIN_TIMEOUT_S = 30
# Replicas of the OCR service the gateway can balance over (the first one always runs).
MAX_REPLICAS = 2
ROTATION_TIMEOUT_S = 15.0
# Prometheus job names of the local scrape configuration, by component.
# As the cluster's job Redis (manifests/components/jobs/redis.yaml): the queue's byte bound, OCR_JOBS_QUEUE_MAX_BYTES
# (128 MiB by default), is half of it.
SCRAPE_JOBS = {
    "service": "ocr-service", "predictor": "ocr-service", "worker": "ocr-worker", "layout": "ocr-layout",
    "table": "ocr-table",
}  # fmt: skip


# Room in the service's queue for the gateway scenarios' bursts (two keys, 10 requests each at the start of a
# second), and small enough that the memory budget still gives this 2-CPU machine its 2 inferences at once: at
# 64 the budget took the service to 1 (the uploads it may hold eat what a 300-dpi page needs to decode), and
# 20 requests a second through the gateway were more than one inference at a time carries.
LOCAL_QUEUE = "32"


class LocalTarget(Target, Models, base.Gateway, Rollout, WorkerKill):
    """The platform as processes on this machine's loopback: the service and the layout service, the gateway
    and its authorizer, Redis, the workers and Prometheus."""

    name = "local"
    initial_workers = 2
    request_timeout_s = 6
    visibility_timeout_s = 8
    max_attempts = 3

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(options)
        self.log_dir = options.artifacts / "processes"
        self._work = Path(tempfile.mkdtemp(prefix="ocr-local-"))
        self._started: list[ManagedProcess] = []
        self.redis: Endpoint | None = None
        self.service: Endpoint | None = None
        self.layout: Endpoint | None = None  # the same service code with OCR_MODEL=layout
        self.table: Endpoint | None = None  # and with OCR_MODEL=table
        self.prom: Endpoint | None = None
        self.gateway: Gateway | None = None
        self.authz: Authorizer | None = None
        self._workers: dict[str, Endpoint] = {}
        self._replicas: dict[int, Endpoint] = {}  # gateway slot -> OCR service process (rollouts)
        self._model_version: str | None = None  # OCR_MODEL_VERSION of the replicas started from now on
        self._rule_files: list[Path] = []
        self._worker_seq = 0

    def start(self) -> None:
        atexit.register(self.stop)
        if ignored := ignored_settings():
            print(f"harness: target local ignores {', '.join(ignored)} from your environment: its processes get "
                  "the settings the scenarios rely on")  # fmt: skip
        try:
            # Authenticated like the platform's Redis should be: the job path is exercised with a password.
            password = secrets.token_urlsafe(24)
            redis = start_job_redis(self.log_dir, self._work / "redis", password=password)
            self.redis = self._track(redis)
            # The gateway scenarios let 10 requests per key through at the start of each second: they wait in
            # the service's queue rather than being refused as overload (LOCAL_QUEUE).
            self.service = self._track(start_service(self.log_dir, env={**self._env(), "OCR_MAX_QUEUE": LOCAL_QUEUE}))
            # The layout model in a second process of the same service code (one onnxruntime thread: it shares
            # this machine's cores). The job workers run OCR only: it is given no job queue of its own.
            layout_env = {**self._env(), "OCR_MODEL": "layout", "OCR_INTRA_OP_THREADS": "1"}
            self.layout = self._track(start_service(self.log_dir, name="layout", env=layout_env))
            # The table model in a third (its cells read by its own OCR pipeline), as the full overlay serves it.
            table_env = {**self._env(), "OCR_MODEL": "table", "OCR_INTRA_OP_THREADS": "1"}
            self.table = self._track(start_service(self.log_dir, name="table", env=table_env))
            # The cluster's API keys: the same clients and key ids (primary: team-a, secondary: team-b), known
            # to the authorizer by their hashes only; the gateway asks it about every request.
            ids = {tenant: (key_id, tenant) for key_id, tenant in API_KEY_IDS.values()}
            keys = new_keys(tuple(ids))
            self.authz = start_authorizer(self.log_dir, self._work / "authz", {keys[c]: ids[c] for c in ids})
            self._started.append(self.authz.process)
            self.gateway = start_gateway(
                self.log_dir, self._work / "gateway", upstream=self.service.url, authorizer=self.authz.url,
                keys=keys, slots=MAX_REPLICAS,
                routes={gateway_host(m): e.url for m, e in (("layout", self.layout), ("table", self.table))},
            )  # fmt: skip
            self._started.append(self.gateway.process)
            write_client_keys(self._work / "gateway" / "api-keys", keys)
            self.ensure_workers(self.initial_workers, reload=False)
            # The platform's own recording rules and alerts, so local scenarios can assert on them too.
            self._rule_files = rules.write_rule_files(self._work / "rules")
            self.prom = self._track(
                start_prometheus(
                    self.log_dir, self._work / "prometheus", self._scrape_jobs(), rule_files=self._rule_files
                )
            )
        except BaseException:
            self._teardown()  # a platform that did not start is never kept
            raise

    def _env(self) -> dict[str, str]:
        """Settings shared by the API and the workers: short timeouts so crash recovery is quick to see."""
        return {
            "OCR_REDIS_URL": self.redis_url,
            # Several of the gateway's readiness checks (every 250 ms): an unready replica leaves its rotation
            # while it still serves.
            "OCR_SHUTDOWN_DRAIN_S": "1.5",
            "OCR_REQUEST_TIMEOUT_S": str(self.request_timeout_s),
            "OCR_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
            "OCR_MAX_ATTEMPTS": str(self.max_attempts),
        }

    def _scrape_jobs(self) -> dict[str, list[str]]:
        assert self.service is not None
        return {
            "ocr-service": [self._addr(self.service)],
            "ocr-layout": [self._addr(self.layout)] if self.layout is not None else [],
            "ocr-table": [self._addr(self.table)] if self.table is not None else [],
            "ocr-worker": [self._addr(w) for w in self._workers.values() if w.process.alive()],
        }

    def _reload_prometheus(self) -> None:
        """Point Prometheus at the current workers (a replaced worker listens on a new port)."""
        if self.prom is None:
            return
        config = prometheus_config(self._scrape_jobs(), rule_files=self._rule_files)
        (self._work / "prometheus" / "prometheus.yml").write_text(config)
        httpx.post(f"{self.prom.url}/-/reload", timeout=10).raise_for_status()

    # -- workers ----------------------------------------------------------------------------------

    def workers(self) -> list[str]:
        return [name for name, w in self._workers.items() if w.process.alive()]

    def ensure_workers(self, count: int, *, reload: bool = True) -> list[str]:
        # One onnxruntime thread each: the workers share this machine's cores.
        env = {**self._env(), "OCR_INTRA_OP_THREADS": "1"}
        while len(self.workers()) < count:
            self._worker_seq += 1
            name = f"worker-{self._worker_seq}"
            self._workers[name] = self._track(start_worker(self.log_dir, name=name, env=env))
        if reload:
            self._reload_prometheus()
        return self.workers()

    def stop_worker(self, name: str) -> None:
        self._workers[name].process.signal(signal.SIGTERM)

    def kill_worker(self, name: str) -> None:
        self._workers[name].process.signal(signal.SIGKILL)

    def worker_exit_code(self, name: str, timeout: float) -> int:
        return self._workers[name].process.wait_exit(timeout)

    def jobs_admin(self, *args: str, input: bytes | None = None) -> str:
        # The password travels in the environment, never on a command line.
        env = {**inherited_env(), **self._env()}
        return commands.run(
            [sys.executable, "-m", "service.jobs.admin", *args], timeout=ADMIN_TIMEOUT_S, input=input, env=env
        )

    def _track(self, endpoint: Endpoint) -> Endpoint:
        self._started.append(endpoint.process)
        return endpoint

    @staticmethod
    def _addr(endpoint: Endpoint) -> str:
        return f"{endpoint.host}:{endpoint.port}"

    def stop(self) -> None:
        if self.options.keep:
            self._keep()
            return
        self._teardown()

    def _teardown(self) -> None:
        stop_all(self._started)
        self._started.clear()
        shutil.rmtree(self._work, ignore_errors=True)

    kept_message = ""

    def _keep(self) -> None:
        """Leave the processes running: record them where ``harness local down`` finds them (once)."""
        if self.kept_message:
            return
        endpoints = (
            self.service,
            self.layout,
            self.table,
            *self._replicas.values(),
            self.prom,
            *self._workers.values(),
        )
        addresses = {e.process.name: e.url for e in endpoints if e}
        if self.redis is not None:
            addresses[self.redis.process.name] = f"redis://{self._addr(self.redis)}"
        if self.gateway is not None:
            addresses[self.gateway.process.name] = self.gateway.url
        if self.authz is not None:
            addresses[self.authz.process.name] = self.authz.url
        processes = [
            kept.KeptProcess(p.name, p.pid, started, addresses.get(p.name, ""))
            for p in self._started
            if p.alive() and (started := kept.start_token(p.pid)) is not None
        ]
        if not processes:  # nothing left to keep (it did not start, or has stopped)
            self._teardown()
            return
        notes = {"Redis password": str(self._work / "redis" / "redis.conf")}
        try_it = ""
        if self.gateway is not None:
            keys = self._work / "gateway" / "api-keys"
            notes["API keys (client key)"] = str(keys)
            try_it = try_command(self.gateway.url, keys)
        elif self.service is not None:
            try_it = f"curl -sS -F file=@page.png {self.service.url}/predict"
        platform = kept.KeptPlatform(str(self._work), str(self.log_dir), processes, notes, try_it)
        self.kept_message = platform.describe(platform.save())
        print(self.kept_message)

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise TargetUnavailable("local target not started")
        return redis_url(self.redis)

    def service_url(self) -> str:
        if self.service is None:
            raise TargetUnavailable("local target not started")
        return self.service.url

    def model_url(self, model: str) -> str:
        endpoints = {"ocr": self.service, "layout": self.layout, "table": self.table}
        if model not in endpoints:
            raise TargetUnavailable(f"target local serves no model {model!r}; it serves {sorted(endpoints)}")
        endpoint = endpoints[model]
        if endpoint is None:
            raise TargetUnavailable("local target not started")
        return endpoint.url

    def model_host(self, model: str) -> str:
        return gateway_host(model)

    def gateway_url(self) -> str:
        if self.gateway is None:
            raise TargetUnavailable("local target not started")
        return self.gateway.url

    def api_keys(self) -> dict[str, str]:
        if self.gateway is None:
            raise TargetUnavailable("local target not started")
        return dict(self.gateway.keys)

    def describe_gateway(self) -> str:
        return f"{gateway_version()} on loopback (harness.acceptance.gateway), asking service.authz"

    def stop_api_key_authorizer(self) -> str:
        if self.authz is None:
            raise TargetUnavailable("local target not started")
        process = self.authz.process
        process.stop()
        self._undo.append((f"restarting {process.name}", self._restart_authorizer))
        return f"{process.name} (pid {process.pid}) stopped"

    def _restart_authorizer(self) -> None:
        assert self.authz is not None
        self.authz.process.start()
        wait.until(
            lambda: _answers(f"{self.authz.health_url}/readyz") if self.authz else False,
            lambda ok: ok, timeout=30, interval=0.2, what=f"{self.authz.process.name} ready again",
        )  # fmt: skip

    def prometheus(self) -> Prometheus:
        if self.prom is None:
            raise TargetUnavailable("local target not started")
        return Prometheus(self.prom.url)

    def scrape_job(self, component: str) -> str:
        try:
            return SCRAPE_JOBS[component]
        except KeyError:
            raise TargetUnavailable(f"Prometheus scrapes no {component!r} on target local") from None

    def _processes(self, component: str) -> list[ManagedProcess]:
        component = "service" if component == "predictor" else component
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

    # -- rollouts: replicas of the OCR service behind the gateway -------------------------------------------

    def _service_env(self) -> dict[str, str]:
        # The cluster's request timeout (manifests: 30 s), not the short one of the crash scenarios: a request
        # slowed by a replica loading its model on this machine's shared cores is late, not lost.
        env = {
            **self._env(), "OCR_MAX_QUEUE": LOCAL_QUEUE, "OCR_REQUEST_TIMEOUT_S": "30", "OCR_VISIBILITY_TIMEOUT_S": "60"
        }  # fmt: skip
        if self._model_version:
            env["OCR_MODEL_VERSION"] = self._model_version
        return env

    def _rotation(self, slot: int, accept: Callable[[str], bool], what: str) -> float:
        """Seconds until the gateway's state of a replica slot is accepted."""
        assert self.gateway is not None
        gateway = self.gateway
        start = time.monotonic()
        wait.until(
            lambda: gateway.server_states().get(server_name(slot), "?"), accept, timeout=ROTATION_TIMEOUT_S,
            interval=0.05, what=f"gateway: replica {slot} {what}",
        )  # fmt: skip
        return round(time.monotonic() - start, 3)

    def ensure_service_replicas(self, count: int) -> int:
        if self.gateway is None or self.service is None:
            raise TargetUnavailable("local target not started")
        if count > self.gateway.slots:
            raise TargetUnavailable(f"the local gateway balances over at most {self.gateway.slots} replicas")
        self._replicas.setdefault(1, self.service)
        for slot in range(2, count + 1):
            if slot not in self._replicas or not self._replicas[slot].process.alive():
                endpoint = self._track(start_service(self.log_dir, name=f"service-{slot}", env=self._service_env()))
                self._replicas[slot] = endpoint
                self.gateway.assign(slot, endpoint.host, endpoint.port)
        for slot in range(1, count + 1):
            self._rotation(slot, lambda s: s == "UP", "in rotation")
        return count

    def roll_out(self, version: str, *, timeout: float) -> dict[str, Any]:
        """Restart each replica in turn with ``OCR_MODEL_VERSION=version`` on its port: SIGTERM (readiness
        503, the gateway takes it out, it drains and exits 0), then the new process, back in rotation once
        ready, before the next replica."""
        if self.gateway is None or self.service is None:
            raise TargetUnavailable("local target not started")
        self._replicas.setdefault(1, self.service)
        deadline = time.monotonic() + timeout
        self._model_version = version
        seen: list[dict[str, Any]] = []
        for slot, old in sorted(self._replicas.items()):
            if not old.process.alive():
                continue
            entry: dict[str, Any] = {"replica": slot, "port": old.port}
            start = time.monotonic()
            watch = DrainWatch(old, start)
            watch.start()
            old.process.signal(signal.SIGTERM)
            entry["out_of_rotation_after_s"] = self._rotation(slot, lambda s: s.startswith("DOWN"), "out of rotation")
            entry["serving_when_taken_out"] = old.process.alive()
            entry["exit_code"] = old.process.wait_exit(max(deadline - time.monotonic(), 1.0))
            entry["exited_after_s"] = round(time.monotonic() - start, 3)
            entry["drain"] = watch.stop()
            name = f"service-{slot}-{version}"
            new = self._track(
                start_service(self.log_dir, name=name, env=self._service_env(), port=old.port,
                              ready_timeout=max(deadline - time.monotonic(), 1.0))
            )  # fmt: skip
            self._replicas[slot] = new
            if slot == 1:
                self.service = new
            self._rotation(slot, lambda s: s == "UP", "back in rotation")
            entry["back_in_rotation_after_s"] = round(time.monotonic() - start, 3)
            seen.append(entry)
        return {"version": version, "replicas": seen}

    def _retire_extra_replicas(self) -> None:
        for slot in [s for s in self._replicas if s > 1]:
            endpoint = self._replicas.pop(slot)
            if self.gateway is not None:
                self.gateway.retire(slot)
            endpoint.process.stop()

    def scenario_finished(self) -> None:
        super().scenario_finished()
        self._retire_extra_replicas()

    def collect_evidence(self, dest: Path) -> None:
        # Process logs already live under artifacts/<run>/processes; point at them from the scenario.
        dest.mkdir(parents=True, exist_ok=True)
        for process in self._started:
            if process.log_path.exists():
                shutil.copyfile(process.log_path, dest / process.log_path.name)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def try_command(gateway_url: str, keys_file: Path) -> str:
    """A curl line to paste: a page (any PNG or JPEG named page.png) through the gateway with the first
    client's key, read from the keys file when it runs (the key is never printed)."""
    key = f"$(head -n1 {shlex.quote(str(keys_file))} | cut -d' ' -f2)"
    return f'curl -sS -H "x-api-key: {key}" -F file=@page.png {gateway_url}/predict'


def write_client_keys(path: Path, keys: dict[str, str]) -> Path:
    """``<client> <key>`` lines for a person trying the gateway by hand, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.writelines(f"{client} {key}\n" for client, key in keys.items())
    return path


class DrainWatch:
    """A replica's /readyz watched every 50 ms from outside it while it drains: when it first answered 503,
    and when it first refused the connection (it stopped listening); seconds from ``start`` (the SIGTERM)."""

    def __init__(self, replica: Endpoint, start: float) -> None:
        self.replica = replica
        self.start_at = start
        self.first: dict[str, float] = {}
        self.statuses: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"drain-{replica.port}", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.is_set():
                at = round(time.monotonic() - self.start_at, 3)
                try:
                    status = client.get(f"{self.replica.url}/readyz").status_code
                except httpx.TimeoutException:
                    status = -1  # no answer in time: neither a 503 nor a refusal
                except httpx.TransportError:
                    status = 0
                self.statuses.append((at, status))
                key = {503: "readyz_503_after_s", 0: "stopped_listening_after_s"}.get(status)
                if key and key not in self.first:
                    self.first[key] = at
                if status == 0:
                    return
                self._stop.wait(0.05)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        return {**self.first, "readyz_samples": len(self.statuses), "readyz_first": self.statuses[:1]}
