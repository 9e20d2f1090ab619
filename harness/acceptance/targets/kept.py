"""A local platform left running (``--keep``, ``harness local up``), and stopping it (``harness local down``).

When the local target is kept, it writes a state file, ``<state dir>/<work folder name>.json``: each
process's name, pid, command line and address, the temporary work folder (Redis' password, the gateway's
API keys) and the log folder. The state dir is ``$HARNESS_LOCAL_STATE_DIR``, else
``~/.cache/ocr-platform/local``. ``harness local down`` reads every state file there, stops the processes
in reverse start order (SIGTERM to each process group, SIGKILL after a grace period), removes the work
folder and the state file. A pid whose start time is not the one recorded is left alone (that process
ended and its pid was reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_DIR_ENV = "HARNESS_LOCAL_STATE_DIR"
STOP_GRACE_S = 10.0


def state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    return Path.home() / ".cache" / "ocr-platform" / "local"


@dataclass
class KeptProcess:
    name: str
    pid: int
    started: str  # start_token(pid) when it was kept
    address: str = ""  # URL or host:port; empty when it listens nowhere


@dataclass
class KeptPlatform:
    work_dir: str
    log_dir: str
    processes: list[KeptProcess] = field(default_factory=list)  # in start order
    notes: dict[str, str] = field(default_factory=dict)  # where the secrets are: name -> path
    try_it: str = ""  # a command to paste that sends the platform a page

    @property
    def path(self) -> Path:
        return state_dir() / f"{Path(self.work_dir).name}.json"

    def save(self) -> Path:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        return path

    @classmethod
    def load(cls, path: Path) -> KeptPlatform:
        data = json.loads(path.read_text(encoding="utf-8"))
        processes = [KeptProcess(**p) for p in data.pop("processes", [])]
        return cls(processes=processes, **data)

    def describe(self, state_file: Path) -> str:
        """What a user needs: each process with its address and pid, the secrets, the logs, how to stop."""
        width = max((len(p.name) for p in self.processes), default=0)
        lines = ["harness: the local platform stays up:"]
        lines += [f"  {p.name:<{width}}  {p.address or '-':<28}  pid {p.pid}" for p in self.processes]
        lines += [f"  {name}: {path}" for name, path in self.notes.items()]
        if self.try_it:
            lines.append(f"  try it: {self.try_it}")
        lines += [
            f"  logs: {self.log_dir}",
            f"  state: {state_file}",
            f"  stop it: {_harness()} local down   (stops these pids, removes {self.work_dir})",
        ]
        return "\n".join(lines)


def _harness() -> str:
    """How to call the harness from here: the venv's script when it is there."""
    script = Path(sys.executable).parent / "harness"
    return str(script) if script.exists() else "harness"


def kept_platforms() -> list[Path]:
    directory = state_dir()
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def start_token(pid: int) -> str | None:
    """When ``pid`` started, as the system tells it; None when there is no such process (a zombie is none).
    Recorded with the pid, it tells the process from a later one given the same pid (a command line does
    not: Redis rewrites its own)."""
    if Path("/proc/self/stat").exists():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        return None if fields[0] == "Z" else fields[19]  # state, ..., starttime (field 22 of proc(5))
    result = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


def is_running(process: KeptProcess) -> bool:
    """The recorded process is alive, and is the one recorded (not a later one with the same pid)."""
    return start_token(process.pid) == process.started


def _signal(process: KeptProcess, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # started with start_new_session: its group is its own
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


def stop_kept(path: Path, *, grace: float = STOP_GRACE_S) -> list[str]:
    """Stop one kept platform (reverse start order), remove its work folder and state file; what was done."""
    platform = KeptPlatform.load(path)
    done = []
    for process in reversed(platform.processes):
        if not is_running(process):
            done.append(f"{process.name} (pid {process.pid}) was not running")
            continue
        _signal(process, signal.SIGTERM)
        started = time.monotonic()
        while is_running(process) and time.monotonic() < started + grace:
            time.sleep(0.1)
        if is_running(process):
            _signal(process, signal.SIGKILL)
            done.append(f"{process.name} (pid {process.pid}) killed after {grace:g} s")
        else:
            done.append(f"{process.name} (pid {process.pid}) stopped in {time.monotonic() - started:.1f} s")
    shutil.rmtree(platform.work_dir, ignore_errors=True)
    done.append(f"removed {platform.work_dir}")
    path.unlink(missing_ok=True)
    return done


def down(paths: Sequence[Path] | None = None) -> list[str]:
    paths = kept_platforms() if paths is None else paths
    if not paths:
        return [f"no kept local platform (no state file in {state_dir()})"]
    lines = []
    for path in paths:
        lines += stop_kept(path)
    return lines
