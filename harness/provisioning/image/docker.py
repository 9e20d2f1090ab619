"""The docker command line, as argv lists built from keyword options, the engine check, and image archives.

The builders are pure (unit-tested); :func:`docker` runs one of them. Every container the tier starts uses
the host network (the CI engine runs with ``--bridge=none``) and listens on loopback only.

Images are built without attestations where the builder would add them (:func:`attestation_flags`), and
:func:`save_image` writes an image archive: both for kind, whose ``kind load docker-image`` fails
(``ctr: content digest ... not found``) on images with provenance attestations under Docker 29's containerd
image store (kubernetes-sigs/kind#3795, #4236), and whose ``kind load image-archive`` takes the archive.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import commands
from harness.errors import HarnessError, TargetUnavailable
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


NO_ATTESTATIONS = ("--provenance=false", "--sbom=false")


def build_argv(
    *,
    context: Path,
    dockerfile: Path,
    tag: str,
    build_args: Mapping[str, str],
    network: str = "host",
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """``docker build`` of ``context`` with ``dockerfile``; build args in a stable (sorted) order, then
    ``extra_flags`` (e.g. :func:`attestation_flags`)."""
    argv = [DOCKER, "build", "--network", network, "--force-rm", "--file", str(dockerfile), "--tag", tag]
    for key in sorted(build_args):
        argv += ["--build-arg", f"{key}={build_args[key]}"]
    return [*argv, *extra_flags, str(context)]


def flags_from_help(help_text: str) -> list[str]:
    """The no-attestation flags, if the ``docker build --help`` text offers both: buildx's does (it makes
    provenance attestations by default), the legacy builder's does not (it makes none, and refuses the
    flags as unknown)."""
    offered = set(re.findall(r"--[a-z][a-z-]*", help_text))
    return list(NO_ATTESTATIONS) if {"--provenance", "--sbom"} <= offered else []


def attestation_flags(timeout: float = 60.0) -> list[str]:
    """``--provenance=false --sbom=false`` when ``docker build`` runs BuildKit through buildx, else nothing.

    Asked of ``docker build --help`` itself: the CLI picks the builder for ``--help`` exactly as for a build
    (``DOCKER_BUILDKIT``, the daemon's default builder, whether buildx is installed), so the answer holds for
    the build that follows. Docker 29's ``docker build`` is buildx; an engine whose default is the legacy
    builder (Debian's docker.io 20.10, as CI runs) gets no flags. If the question itself fails, no flags:
    the build then reports what is wrong.
    """
    try:
        return flags_from_help(docker("build", "--help", timeout=timeout))
    except HarnessError:
        return []


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


def oneshot_argv(
    image: str,
    command: Sequence[str],
    *,
    user: str = "10001",
    network: str = "none",
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """``docker run --rm`` of one command, read-only, as ``user``, with no network unless given one."""
    argv = [DOCKER, "run", "--rm", "--network", network, "--read-only", "--user", user]
    for key in sorted(env or {}):
        argv += ["--env", f"{key}={(env or {})[key]}"]
    return [*argv, image, *command]


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


def save_argv(tag: str, path: Path) -> list[str]:
    return [DOCKER, "save", "--output", str(path), tag]


SAVE_TIMEOUT_S = 900.0


def save_image(tag: str, path: Path, *, timeout: float = SAVE_TIMEOUT_S) -> Path:
    """Write image ``tag`` to the archive ``path`` (``docker save``) for ``kind load image-archive``.

    The archive is written beside ``path`` under a temporary name and renamed into place once complete, so
    an interrupted save never leaves a truncated archive where a cluster would load it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        commands.run(save_argv(tag, partial), timeout=timeout)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
