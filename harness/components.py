"""The platform's components as local processes: the API, the job workers, Redis and Prometheus.

Each ``start_*`` starts one real process on loopback, waits until it is ready (with a deadline) and
returns it; the caller stops it (see :func:`harness.processes.stop_all`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess

SERVICE_READY_TIMEOUT_S = 60.0


@dataclass
class Endpoint:
    process: ManagedProcess
    port: int
    host: str = LOOPBACK

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


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
) -> Endpoint:
    """``python -m service`` on a free loopback port, ready when /readyz answers 200."""
    port = free_port()
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "service"],
        log_path=log_dir / f"{name}.log",
        env={"OCR_HOST": LOOPBACK, "OCR_PORT": str(port), **(env or {})},
    ).start()
    endpoint = Endpoint(process, port)
    try:
        process.wait_ready(lambda: _http_ok(f"{endpoint.url}/readyz"), timeout=ready_timeout)
    except BaseException:
        process.stop()
        raise
    return endpoint
