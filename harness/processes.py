"""Real processes on this machine: started with argv lists, logged to files, awaited, stopped in order.

A :class:`ManagedProcess` writes its output to a log file (kept as evidence), is "ready" when its probe
says so before a deadline, and stops with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import wait
from harness.errors import HarnessError, ToolMissing, WaitTimeout

# How to get each binary the local target runs: Debian package, Homebrew formula.
INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server (Debian/Ubuntu) or brew install redis (macOS)",
    "redis-cli": "apt-get install redis-tools (Debian/Ubuntu) or brew install redis (macOS)",
    "prometheus": "apt-get install prometheus (Debian/Ubuntu) or brew install prometheus (macOS)",
    "promtool": "apt-get install prometheus (Debian/Ubuntu) or brew install prometheus (macOS)",
    "docker": "apt-get install docker.io (Debian/Ubuntu) or install Docker Desktop (macOS)",
    "haproxy": "apt-get install haproxy (Debian/Ubuntu) or brew install haproxy (macOS)",
}


# Debian installs daemons (haproxy) in sbin folders, which a non-root user's PATH often lacks.
SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH (or in the sbin folders), or ToolMissing naming the package that provides it."""
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        raise ToolMissing(name, INSTALL_HINTS.get(name, f"install {name} and put it on PATH"))
    return path


# The service's settings: a process the harness starts gets exactly the ones the harness gives it.
SETTINGS_PREFIX = "OCR_"


def inherited_env() -> dict[str, str]:
    """This process's environment without the service's settings (``OCR_*``): a value left in the user's
    shell (say ``OCR_MAX_UPLOAD_BYTES=1000``) must not change what the scenarios test."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIX)}


def ignored_settings() -> list[str]:
    """The ``OCR_*`` names in this environment that started processes do not inherit."""
    return sorted(k for k in os.environ if k.startswith(SETTINGS_PREFIX))


class ProcessExited(HarnessError):
    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        self.name = name
        self.returncode = returncode
        super().__init__(f"{name} exited with {returncode} before it was ready; log tail:\n{log_tail}")


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**inherited_env(), **self.env},
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C in the terminal reaches the harness, which stops us in order
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise HarnessError(f"{self.name} was never started")
        return self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> None:
        """Poll ``probe`` until true; fail at once if the process dies, else at the deadline."""

        def observe() -> str:
            if self.poll() is not None:
                return "exited"
            return "ready" if probe() else "not ready"

        wait.until(observe, lambda s: s != "not ready", timeout=timeout, interval=interval, what=f"{self.name} ready")
        code = self.poll()
        if code is not None:
            raise ProcessExited(self.name, code, self.log_tail())

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, *, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def wait_exit(self, timeout: float) -> int:
        if self.proc is None:
            raise HarnessError(f"{self.name} was never started")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise WaitTimeout(f"{self.name} to exit", timeout, "still running") from exc


def stop_all(processes: Sequence[ManagedProcess], *, grace: float = 10.0) -> dict[str, int | None]:
    """Stop in reverse start order; one failure does not keep the others running."""
    codes: dict[str, int | None] = {}
    for process in reversed(processes):
        try:
            codes[process.name] = process.stop(grace=grace)
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            codes[process.name] = None
            print(f"harness: could not stop {process.name}: {exc}")
    return codes
