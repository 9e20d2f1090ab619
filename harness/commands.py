"""The one way the harness runs external tools (kind, helm, kubectl, docker, debootstrap, pip).

argv lists in, text out, and one error translation for all of them:

* the tool is not installed            -> :class:`~harness.errors.ToolMissing` (with how to get it)
* it ran past its deadline             -> :class:`~harness.errors.CommandTimeout` (the output's tail kept)
* it exited non-zero                   -> :class:`~harness.errors.CommandFailed` (stderr or the log's tail)

:func:`run` is for short commands whose output the caller reads. :func:`run_logged` is for long ones
(``helm --wait``, ``docker build``): their output goes to a log file and, when a ``say`` callback is given,
to the console as it comes, with a heartbeat line while the tool is silent, so a ten-minute wait is never
mute.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.errors import CommandFailed, CommandTimeout, ToolMissing

TAIL_CHARS = 4000
HEARTBEAT_S = 30.0

# How to get each tool the harness calls; ToolMissing carries the hint.
INSTALL_HINTS = {
    "docker": "install Docker (https://docs.docker.com/engine/install/) and start it",
    "kind": "run `harness preflight --install-tools`, or see https://kind.sigs.k8s.io/docs/user/quick-start/",
    "helm": "run `harness preflight --install-tools`, or see https://helm.sh/docs/intro/install/",
    "kubectl": "run `harness preflight --install-tools`, or see https://kubernetes.io/docs/tasks/tools/",
    "minikube": "see https://minikube.sigs.k8s.io/docs/start/",
    "debootstrap": "apt-get install debootstrap",
}


def _tail(text: str, chars: int = TAIL_CHARS) -> str:
    return text[-chars:]


def _missing(tool: str) -> ToolMissing:
    name = Path(tool).name
    return ToolMissing(name, INSTALL_HINTS.get(name, f"{name} is needed on PATH"))


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    merge_stderr: bool = False,
) -> str:
    """Run ``argv`` to completion and return its stdout (and stderr, merged, if asked)."""
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            timeout=timeout,
            env=None if env is None else dict(env),
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        seen = (exc.stderr or b"").decode(errors="replace") or (exc.stdout or b"").decode(errors="replace")
        raise CommandTimeout(args, timeout, _tail(seen)) from exc
    except FileNotFoundError as exc:
        raise _missing(args[0]) from exc
    except PermissionError as exc:
        raise CommandFailed(args, 126, f"cannot execute {args[0]}: {exc}") from exc
    stdout = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        stderr = (proc.stderr or b"").decode(errors="replace") or stdout
        raise CommandFailed(args, proc.returncode, _tail(stderr))
    return stdout


def run_logged(
    argv: Sequence[str | Path],
    *,
    log: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    say: Callable[[str], None] | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``argv`` with its output appended to ``log`` (and streamed to ``say``); a failure carries the
    log's tail. While the tool prints nothing for ``heartbeat_s``, ``say`` gets a line with the time spent."""
    args = [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = clock()
    with log.open("ab") as out:
        out.write(f"$ {' '.join(args)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,  # a timeout ends the tool and whatever it started
            )
        except FileNotFoundError as exc:
            raise _missing(args[0]) from exc
        last_output = [clock()]
        # This run's output alone: a failure reports what this command said, not what the log held before.
        seen = bytearray()

        def pump() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                out.write(raw)
                out.flush()
                seen.extend(raw)
                del seen[: max(len(seen) - TAIL_CHARS * 2, 0)]
                last_output[0] = clock()
                if say is not None:
                    say(raw.decode(errors="replace").rstrip())

        reader = threading.Thread(target=pump, name=f"output of {Path(args[0]).name}", daemon=True)
        reader.start()
        next_beat = start + heartbeat_s
        while True:
            try:
                proc.wait(timeout=min(1.0, heartbeat_s))
                break
            except subprocess.TimeoutExpired:
                now = clock()
                if now - start >= timeout:
                    _kill_group(proc)
                    reader.join(timeout=5)
                    raise CommandTimeout(args, timeout, _tail(seen.decode(errors="replace"))) from None
                if say is not None and now >= next_beat and now - last_output[0] >= heartbeat_s:
                    say(f"... still running ({format_elapsed(now - start)})")
                    next_beat = now + heartbeat_s
        reader.join(timeout=5)
    if proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, f"(log: {log})\n{_tail(seen.decode(errors='replace'))}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def format_elapsed(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``7`` -> ``7s``."""
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"
