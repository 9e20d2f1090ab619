"""A throwaway ``redis-server`` on a free loopback port, in a scratch directory, for the worker check."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, require_binary

START_TIMEOUT_S = 30.0


def ping(port: int, timeout: float = 2.0) -> bool:
    """Whether Redis on loopback ``port`` answers PING with PONG."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_argv(exe: str, port: int, directory: Path) -> list[str]:
    """Loopback only and nothing persisted: the server lives for one run."""
    return [
        exe, "--bind", LOOPBACK, "--port", str(port), "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip


@dataclass(frozen=True)
class Redis:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"


@contextmanager
def local_redis(log: Path) -> Iterator[Redis]:
    """A ``redis-server`` ready on a free loopback port; stopped (SIGTERM) and its directory removed on exit."""
    exe = require_binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ocr-redis-") as directory:
        process = ManagedProcess("redis-server", server_argv(exe, port, Path(directory)), log).start()
        try:
            process.wait_ready(lambda: ping(port), timeout=START_TIMEOUT_S)
            yield Redis(process, port)
        finally:
            process.stop()
