"""A real service, worker, Redis and Prometheus on loopback, labelled as the cluster's PodMonitors label them.

Prometheus scrapes every second and loads the PrometheusRule's groups (harness.provisioning.rules.write_rule_files),
so the recording rules the dashboard and the alerts read exist here too. Each target carries the labels a
PodMonitor gives it on the cluster (``namespace``, ``pod``, ``container``, ``job`` as ``namespace/name``), so
the dashboard's queries run here exactly as Grafana sends them (``$namespace`` = ocr-dev).
"""

from __future__ import annotations

import concurrent.futures
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.acceptance.components import Endpoint, redis_url, start_redis, start_service, start_worker
from harness.checks import monitoring
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, require_binary, stop_all
from harness.provisioning import rules, samples

NAMESPACE = monitoring.VARIABLES["namespace"]


@dataclass
class LocalStack:
    service: Endpoint
    worker: Endpoint
    prometheus_url: str
    log_dir: Path
    processes: list[ManagedProcess]
    traffic: dict[str, Any] = field(default_factory=dict)


def prometheus_config(targets: dict[str, tuple[Endpoint, str]], rule_files: list[Path]) -> str:
    """Scrape each PodMonitor's stand-in every second, with the labels the Prometheus Operator would add."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": f"{NAMESPACE}/{name}",
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [f"{endpoint.host}:{endpoint.port}"],
                        "labels": {"namespace": NAMESPACE, "pod": f"{name}-local", "container": container},
                    }
                ],
            }
            for name, (endpoint, container) in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus_with_rules(log_dir: Path, work_dir: Path, config: str) -> tuple[ManagedProcess, str]:
    binary = require_binary("prometheus")
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "prometheus.yml"
    path.write_text(config)
    process = ManagedProcess(
        name="prometheus",
        argv=[
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1d",
        ],
        log_path=log_dir / "prometheus.log",
    ).start()
    url = f"http://{LOOPBACK}:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        process.wait_ready(ready, timeout=30)
    except BaseException:
        process.stop()
        raise
    return process, url


def wait_for_targets(url: str, count: int, timeout: float = 20.0) -> None:
    """Until Prometheus has scraped every target once: traffic sent before that would not be counted."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/v1/query", params={"query": "count(up == 1)"}, timeout=5).json()
        result = body.get("data", {}).get("result", [])
        seen = float(result[0]["value"][1]) if result else 0
        if seen >= count:
            time.sleep(1.5)  # and one more scrape, so the first samples of every series are in
            return
        time.sleep(0.25)
    raise AssertionError(f"Prometheus scrapes {seen} of {count} targets after {timeout:.0f} s")


def send_traffic(service: str, rounds: int = 4, pause_s: float = 1.2) -> dict[str, Any]:
    """A little of everything the dashboard shows: answers, refused uploads, 503s from overload, jobs done.

    In rounds a scrape apart, so that every counter is seen to grow: Prometheus counts no increase before a
    series' first sample, and a rate needs two samples that differ. Small one-line images only (the model costs
    about 0.5 s of CPU per page; these take a fraction of it).
    """
    statuses: dict[int, int] = {}
    images = [samples.words_image(seed).encode() for seed in range(4)]
    jobs: list[str] = []

    def post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
        response = client.post(f"{service}{path}", files={"file": ("w.png", body, "image/png")})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        return response

    with httpx.Client(timeout=30) as client, concurrent.futures.ThreadPoolExecutor(4) as pool:
        for i in range(rounds):
            assert post(client, "/predict", images[i % len(images)]).status_code == 200
            if i % 2 == 0:
                assert post(client, "/predict", samples.not_an_image()).status_code == 415
            if i in (1, 2):
                # One model slot and no waiting line (OCR_MAX_CONCURRENCY=1, OCR_MAX_QUEUE=0): of a burst of
                # four, those not admitted get 503 overloaded at once.
                for _ in range(5):
                    if 503 in {r.status_code for r in pool.map(lambda b: post(client, "/predict", b), images)}:
                        break
            if i < 2:
                response = post(client, "/jobs", images[i])
                assert response.status_code == 202, response.text
                jobs.append(response.json()["job_id"])
            time.sleep(pause_s)
        assert statuses.get(503), f"no 503 from bursts at one model slot: {statuses}"
        deadline = time.monotonic() + 60
        pending = set(jobs)
        while pending and time.monotonic() < deadline:
            pending = {j for j in pending if client.get(f"{service}/jobs/{j}").json()["status"] != "succeeded"}
            time.sleep(0.2)
        assert not pending, f"jobs not done within 60 s: {pending}"
    return {"statuses": {str(k): v for k, v in sorted(statuses.items())}, "jobs": len(jobs)}


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("monitoring-stack")
    log_dir = work / "logs"
    started: list[ManagedProcess] = []
    try:
        redis = start_redis(log_dir, work / "redis", password=secrets.token_urlsafe(16))
        started.append(redis.process)
        env = {"OCR_REDIS_URL": redis_url(redis), "OCR_INTRA_OP_THREADS": "1", "OCR_SHUTDOWN_DRAIN_S": "0"}
        # The service and the worker load their models at the same time (one core each).
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            service_start = pool.submit(
                start_service, log_dir, env={**env, "OCR_MAX_CONCURRENCY": "1", "OCR_MAX_QUEUE": "0"}
            )
            worker_start = pool.submit(start_worker, log_dir, name="worker-1", env=env)
            concurrent.futures.wait([service_start, worker_start])
            # Whichever started is stopped below even if the other did not.
            started += [f.result().process for f in (service_start, worker_start) if f.exception() is None]
            service, worker = service_start.result(), worker_start.result()
        (rule_file,) = rules.write_rule_files(work / "rules")
        config = prometheus_config(
            {"ocr-predictor": (service, "kserve-container"), "ocr-worker": (worker, "worker")}, [rule_file]
        )
        prometheus, url = start_prometheus_with_rules(log_dir, work / "prometheus", config)
        started.append(prometheus)
        wait_for_targets(url, 2)
        yield LocalStack(service, worker, url, log_dir, started)
    finally:
        stop_all(started, grace=5)
