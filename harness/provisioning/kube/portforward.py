"""``kubectl port-forward`` kept alive: a loopback URL that survives the pod behind it going away.

A forward to a Service is pinned to one of its pods when it starts; when that pod is replaced (scale-in,
a rollout) kubectl exits. :meth:`PortForward.url` restarts it on the same local port, so the URL a step
holds stays valid.

:class:`KubectlProxy` is ``kubectl proxy`` on loopback: the API server's service proxy behind it picks a
ready endpoint at random for every request, so load sent through it reaches every replica (a port-forward
would pin all of it to one pod).
"""

from __future__ import annotations

import socket
from pathlib import Path

from harness.errors import HarnessError, WaitTimeout
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess
from harness.provisioning.tools import resolve

READY_TIMEOUT_S = 30


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


class PortForward:
    def __init__(self, context: str, namespace: str, resource: str, remote_port: int, *, log_dir: Path) -> None:
        self.context, self.namespace, self.resource, self.remote_port = context, namespace, resource, remote_port
        self.local_port = free_port()
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def name(self) -> str:
        return f"port-forward-{self.namespace}-{self.resource.replace('/', '-')}"

    def argv(self) -> list[str]:
        return [
            resolve("kubectl"), "--context", self.context, "-n", self.namespace, "port-forward",
            "--address", LOOPBACK, self.resource, f"{self.local_port}:{self.remote_port}",
        ]  # fmt: skip

    def _start(self) -> None:
        self.process = ManagedProcess(self.name, self.argv(), self.log_dir / f"{self.name}.log").start()
        try:
            self.process.wait_ready(lambda: _listening(self.local_port), timeout=READY_TIMEOUT_S)
        except (WaitTimeout, HarnessError) as exc:
            tail = self.process.log_tail(5)
            self.process.stop(grace=2)
            raise HarnessError(f"port-forward to {self.namespace}/{self.resource} did not open: {exc}\n{tail}") from exc

    def url(self) -> str:
        """``http://127.0.0.1:<port>``, with the forward (re)started if it is not running."""
        if self.process is None or not self.process.alive():
            self._start()
        return f"http://{LOOPBACK}:{self.local_port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=2)
            self.process = None


class KubectlProxy:
    def __init__(self, context: str, *, log_dir: Path) -> None:
        self.context = context
        self.local_port = free_port()
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    def argv(self) -> list[str]:
        return [resolve("kubectl"), "--context", self.context, "proxy", "--address", LOOPBACK,
                "--port", str(self.local_port)]  # fmt: skip

    def url(self) -> str:
        """``http://127.0.0.1:<port>``, with the proxy (re)started if it is not running."""
        if self.process is None or not self.process.alive():
            self.process = ManagedProcess("kubectl-proxy", self.argv(), self.log_dir / "kubectl-proxy.log").start()
            try:
                self.process.wait_ready(lambda: _listening(self.local_port), timeout=READY_TIMEOUT_S)
            except (WaitTimeout, HarnessError) as exc:
                tail = self.process.log_tail(5)
                self.process.stop(grace=2)
                self.process = None
                raise HarnessError(f"kubectl proxy did not open: {exc}\n{tail}") from exc
        return f"http://{LOOPBACK}:{self.local_port}"

    def service_url(self, namespace: str, service: str, port: int) -> str:
        """The service through the API server's proxy: each request to a random ready endpoint."""
        return f"{self.url()}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=2)
            self.process = None
