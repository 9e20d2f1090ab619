"""The platform's components as local processes: the API, the job workers, the API-key authorizer, Redis
and Prometheus.

Each ``start_*`` starts one real process on loopback, waits until it is ready (with a deadline) and
returns it; the caller stops it (see :func:`harness.processes.stop_all`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness.errors import HarnessError
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, require_binary

SERVICE_READY_TIMEOUT_S = 60.0


@dataclass
class Endpoint:
    process: ManagedProcess
    port: int
    host: str = LOOPBACK
    password: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _ready_or_stopped(endpoint: Endpoint, probe: Callable[[], bool], timeout: float) -> Endpoint:
    """Wait for ``probe``; a process that does not get ready is stopped before the error propagates."""
    try:
        endpoint.process.wait_ready(probe, timeout=timeout)
    except BaseException:
        endpoint.process.stop()
        raise
    return endpoint


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_service(
    log_dir: Path,
    *,
    name: str = "service",
    env: Mapping[str, str] | None = None,
    ready_timeout: float = SERVICE_READY_TIMEOUT_S,
    port: int | None = None,
) -> Endpoint:
    """``python -m service`` on a loopback port (free unless given: a replacement replica takes its
    predecessor's), ready when /readyz answers 200."""
    port = port or free_port()
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "service"],
        log_path=log_dir / f"{name}.log",
        env={"OCR_HOST": LOOPBACK, "OCR_PORT": str(port), **(env or {})},
    ).start()
    endpoint = Endpoint(process, port)
    return _ready_or_stopped(endpoint, lambda: _http_ok(f"{endpoint.url}/readyz"), ready_timeout)


def start_redis(
    log_dir: Path,
    work_dir: Path,
    *,
    name: str = "redis",
    port: int | None = None,
    appendonly: bool = False,
    password: str | None = None,
    maxmemory: str | None = None,
    ready_timeout: float = 20.0,
) -> Endpoint:
    """``redis-server`` on a loopback port (free unless given), ready when it answers PING.

    No persistence by default; ``appendonly`` keeps an AOF in ``work_dir`` as the cluster's Redis does.
    A ``password`` goes into a config file readable by this user only, never onto the command line.
    ``maxmemory`` (e.g. ``"256mb"``) bounds it as the cluster's Redis is bounded: writes past it are refused
    (``noeviction``), never a job silently evicted.
    """
    import redis

    binary = require_binary("redis-server")
    port = port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "redis.conf"
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as fh:
        fh.write(f"requirepass {password}\n" if password else "")
    argv = [
        binary, str(config), "--port", str(port), "--bind", LOOPBACK, "--save", "",
        "--appendonly", "yes" if appendonly else "no", "--dir", str(work_dir),
        "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip
    if appendonly:
        argv += ["--appendfsync", "everysec"]  # as the cluster's: at most a second of writes lost to a crash
    if maxmemory is not None:
        argv += ["--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"]
    process = ManagedProcess(name=name, argv=argv, log_path=log_dir / f"{name}.log").start()

    def pong() -> bool:
        try:
            return bool(redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    return _ready_or_stopped(Endpoint(process, port, password=password), pong, ready_timeout)


# The job queue's Redis as manifests/components/jobs/redis.yaml runs it: an append-only file synced every
# second, bounded memory that refuses writes rather than evicting a job.
JOB_REDIS_MAXMEMORY = "256mb"


def start_job_redis(
    log_dir: Path, work_dir: Path, *, password: str | None, port: int | None = None, name: str = "redis"
) -> Endpoint:
    """The job queue's Redis, configured as on the cluster; started again on the same ``work_dir`` (and port) it
    reloads its append-only file, so a crash loses no job queued more than a second before it."""
    return start_redis(
        log_dir, work_dir, name=name, port=port, appendonly=True, password=password, maxmemory=JOB_REDIS_MAXMEMORY
    )


def redis_url(endpoint: Endpoint, db: int = 0) -> str:
    """The URL the service and the workers are given (``OCR_REDIS_URL``), with the password if any."""
    auth = f":{endpoint.password}@" if endpoint.password else ""
    return f"redis://{auth}{endpoint.host}:{endpoint.port}/{db}"


def prometheus_config(
    jobs: Mapping[str, list[str]], *, interval_s: float = 1.0, rule_files: Sequence[Path] = ()
) -> str:
    """A Prometheus configuration scraping each job's loopback targets every ``interval_s`` seconds and
    evaluating ``rule_files`` (the platform's recording rules and alerts) at the same pace."""
    import yaml

    interval = f"{interval_s:g}s"
    config: dict[str, object] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}
            for job, targets in jobs.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(
    log_dir: Path,
    work_dir: Path,
    jobs: Mapping[str, list[str]],
    *,
    name: str = "prometheus",
    rule_files: Sequence[Path] = (),
    ready_timeout: float = 30.0,
) -> Endpoint:
    """``prometheus`` on a free loopback port with a generated config; ready when /-/ready says so."""
    binary = require_binary("prometheus")
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "prometheus.yml"
    config.write_text(prometheus_config(jobs, rule_files=rule_files))
    process = ManagedProcess(
        name=name,
        argv=[
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
        ],
        log_path=log_dir / f"{name}.log",
    ).start()
    endpoint = Endpoint(process, port)
    return _ready_or_stopped(endpoint, lambda: _http_ok(f"{endpoint.url}/-/ready"), ready_timeout)


def start_worker(
    log_dir: Path, *, name: str, env: Mapping[str, str] | None = None, ready_timeout: float = SERVICE_READY_TIMEOUT_S
) -> Endpoint:
    """``python -m service.jobs.worker`` with its health port on loopback; ready when /healthz says Redis is up."""
    port = free_port()
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "service.jobs.worker"],
        log_path=log_dir / f"{name}.log",
        env={"OCR_HOST": LOOPBACK, "OCR_WORKER_PORT": str(port), "OCR_WORKER_NAME": name, **(env or {})},
    ).start()
    endpoint = Endpoint(process, port)

    def healthy() -> bool:
        try:
            response = httpx.get(f"{endpoint.url}/healthz", timeout=2.0)
            return response.status_code == 200 and response.json().get("redis") is True
        except (httpx.HTTPError, ValueError):
            return False

    return _ready_or_stopped(endpoint, healthy, ready_timeout)


@dataclass
class Authorizer:
    """The API-key authorizer (``python -m service.authz``): checks on ``url``, health on ``health_url``."""

    process: ManagedProcess
    port: int
    health_port: int
    hashes_file: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.health_port}"


def write_key_hashes(path: Path, keys: Mapping[str, tuple[str, str]]) -> Path:
    """The authorizer's hashes file for ``{key: (key_id, tenant)}``, made by the authorizer's own ``hash``
    command (the keys go to it on stdin, never on a command line), readable by this user only."""
    lines = "".join(f"{key_id}\t{tenant}\t{key}\n" for key, (key_id, tenant) in keys.items())
    done = subprocess.run(
        [sys.executable, "-m", "service.authz", "hash"], input=lines, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise HarnessError(f"python -m service.authz hash exited {done.returncode}: {done.stderr.strip()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(done.stdout)
    return path


def start_authorizer(
    log_dir: Path,
    work_dir: Path,
    keys: Mapping[str, tuple[str, str]],
    *,
    name: str = "authz",
    ready_timeout: float = 30.0,
) -> Authorizer:
    """The authorizer on loopback, knowing ``{key: (key_id, tenant)}`` by their hashes only; ready when its
    ``/readyz`` says a hashes file is loaded."""
    hashes = write_key_hashes(work_dir / "hashes.jsonl", keys)
    port, health_port = free_port(), free_port()
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "service.authz"],
        log_path=log_dir / f"{name}.log",
        env={
            "OCR_AUTHZ_HASHES_FILE": str(hashes),
            "OCR_AUTHZ_HOST": LOOPBACK,
            "OCR_AUTHZ_PORT": str(port),
            "OCR_AUTHZ_HEALTH_PORT": str(health_port),
        },
    ).start()
    authorizer = Authorizer(process, port, health_port, hashes)
    try:
        process.wait_ready(lambda: _http_ok(f"{authorizer.health_url}/readyz"), timeout=ready_timeout)
    except BaseException:
        process.stop()
        raise
    return authorizer
