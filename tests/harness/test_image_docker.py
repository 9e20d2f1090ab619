import subprocess
from pathlib import Path

import pytest

from harness.errors import TargetUnavailable
from harness.image import docker
from harness.image.docker import ContainerSpec, build_argv, import_argv, oneshot_argv, run_argv, stop_argv


def test_build_argv_uses_host_network_and_sorted_build_args() -> None:
    argv = build_argv(
        context=Path("/ctx"),
        dockerfile=Path("/ctx/service/Dockerfile"),
        tag="ocr:dev",
        build_args={"WHEELHOUSE": "1", "BASE_IMAGE": "ocr-base:bookworm"},
    )
    assert argv[:2] == ["docker", "build"]
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--file") + 1] == "/ctx/service/Dockerfile"
    assert argv[argv.index("--tag") + 1] == "ocr:dev"
    args = [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"]
    assert args == ["BASE_IMAGE=ocr-base:bookworm", "WHEELHOUSE=1"]
    assert argv[-1] == "/ctx"


def test_run_argv_is_hardened_and_puts_the_command_after_the_image() -> None:
    spec = ContainerSpec(
        name="w", image="ocr:dev", command=("python", "-m", "service.worker"), env={"OCR_PORT": "8123"}
    )
    argv = run_argv(spec)
    assert "--detach" in argv and "--rm" not in argv  # the exit code must survive the stop
    assert "--read-only" in argv
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"
    assert argv[argv.index("--user") + 1] == "10001"
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--env") + 1] == "OCR_PORT=8123"
    assert argv[-4:] == ["ocr:dev", "python", "-m", "service.worker"]


def test_run_argv_without_read_only() -> None:
    argv = run_argv(ContainerSpec(name="a", image="i", read_only=False, tmpfs=()))
    assert "--read-only" not in argv and "--tmpfs" not in argv


def test_oneshot_and_stop_argv() -> None:
    assert oneshot_argv("i", ["id", "-u"])[-3:] == ["i", "id", "-u"]
    assert "none" in oneshot_argv("i", ["true"])
    assert stop_argv("c", grace_s=30) == ["docker", "stop", "--time", "30", "c"]


def test_import_argv_passes_each_change() -> None:
    argv = import_argv(Path("/c/base.tar"), "ocr-base:bookworm", changes=["ENV LANG=C.UTF-8", "LABEL a=b"])
    assert argv == [
        "docker", "import", "--change", "ENV LANG=C.UTF-8", "--change", "LABEL a=b",
        "/c/base.tar", "ocr-base:bookworm",
    ]  # fmt: skip


def test_engine_version_without_an_engine_says_to_start_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "require_binary", lambda name: "/usr/bin/docker")

    def no_daemon(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "Cannot connect to the Docker daemon at unix:///x.sock.")

    monkeypatch.setattr(docker.subprocess, "run", no_daemon)
    with pytest.raises(TargetUnavailable) as info:
        docker.engine_version()
    assert "Cannot connect to the Docker daemon" in str(info.value)
    assert "docker_up" in str(info.value) and "start Docker" in str(info.value)


def test_engine_version_returns_the_server_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "require_binary", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(
        docker.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "20.10.24\n", "")
    )
    assert docker.engine_version() == "20.10.24"
