"""The docker command line, as argv lists built from keyword options, and the engine check.

The builders are pure (unit-tested); :func:`docker` runs one of them. Every container the tier starts uses
the host network (the CI engine runs with ``--bridge=none``) and listens on loopback only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import TargetUnavailable
from harness.image import commands
from harness.processes import require_binary

DOCKER = "docker"
START_HINT = (
    "start Docker: in this project's CI and as root, `source .ci/docker.sh && docker_up`; "
    "on a workstation, `sudo systemctl start docker` (or start Docker Desktop)"
)


def engine_version(timeout: float = 30.0) -> str:
    """The version of the Docker engine that answers, or TargetUnavailable saying to start one."""
    exe = require_binary(DOCKER)
    argv = [exe, "version", "--format", "{{.Server.Version}}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TargetUnavailable(f"no Docker engine answered within {timeout:g}s; {START_HINT}") from exc
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise TargetUnavailable(
            f"no Docker engine answers ({said[-1] if said else f'docker version exited {proc.returncode}'}); "
            + START_HINT
        )
    return version


def docker(*args: str, timeout: float = 120.0) -> str:
    """Run ``docker ARGS...`` and return its stdout, stripped."""
    return commands.run([DOCKER, *args], timeout=timeout).strip()


def build_argv(
    *,
    context: Path,
    dockerfile: Path,
    tag: str,
    build_args: Mapping[str, str],
    network: str = "host",
) -> list[str]:
    """``docker build`` of ``context`` with ``dockerfile``; build args in a stable (sorted) order."""
    argv = [DOCKER, "build", "--network", network, "--force-rm", "--file", str(dockerfile), "--tag", tag]
    for key in sorted(build_args):
        argv += ["--build-arg", f"{key}={build_args[key]}"]
    return [*argv, str(context)]


@dataclass(frozen=True)
class ContainerSpec:
    """A detached container as the tier runs it: hardened as production would run it."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = "10001"
    read_only: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)
    network: str = "host"


def run_argv(spec: ContainerSpec) -> list[str]:
    """``docker run --detach`` for ``spec``; no ``--rm``, so that the exit code survives the stop."""
    argv = [DOCKER, "run", "--detach", "--name", spec.name, "--network", spec.network, "--user", spec.user]
    if spec.read_only:
        argv.append("--read-only")
    for path in spec.tmpfs:
        argv += ["--tmpfs", path]
    for key in sorted(spec.env):
        argv += ["--env", f"{key}={spec.env[key]}"]
    return [*argv, spec.image, *spec.command]


def oneshot_argv(image: str, command: Sequence[str], *, user: str = "10001") -> list[str]:
    """``docker run --rm`` of one command, with no network, read-only, as ``user``."""
    return [DOCKER, "run", "--rm", "--network", "none", "--read-only", "--user", user, image, *command]


def stop_argv(name: str, *, grace_s: int) -> list[str]:
    """``docker stop``: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    return [DOCKER, "stop", "--time", str(grace_s), name]


def inspect_argv(name: str, template: str, *, kind: str = "container") -> list[str]:
    return [DOCKER, kind, "inspect", "--format", template, name]


def exec_argv(name: str, *command: str) -> list[str]:
    return [DOCKER, "exec", name, *command]


def logs_argv(name: str) -> list[str]:
    return [DOCKER, "logs", "--timestamps", name]


def rm_argv(*names: str) -> list[str]:
    return [DOCKER, "rm", "--force", "--volumes", *names]


def import_argv(tarball: Path, tag: str, *, changes: Sequence[str] = ()) -> list[str]:
    """``docker import`` of a root filesystem tarball, with Dockerfile ``changes`` (ENV, LABEL, CMD)."""
    argv = [DOCKER, "import"]
    for change in changes:
        argv += ["--change", change]
    return [*argv, str(tarball), tag]
