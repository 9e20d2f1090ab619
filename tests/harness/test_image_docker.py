import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cli, commands
from harness.errors import HarnessError, TargetUnavailable
from harness.provisioning.image import archive_path, docker
from harness.provisioning.image.docker import (
    NO_ATTESTATIONS,
    ContainerSpec,
    attestation_flags,
    build_argv,
    flags_from_help,
    import_argv,
    oneshot_argv,
    run_argv,
    save_image,
    stop_argv,
)

# Excerpts of `docker build --help`: buildx's (BuildKit; it adds provenance attestations by default) and the
# legacy builder's, as Debian's docker.io 20.10 engine answers it.
BUILDX_HELP = """
Usage:  docker buildx build [OPTIONS] PATH | URL | -

Start a build

Options:
      --add-host strings              Add a custom host-to-IP mapping (format: "host:ip")
      --attest stringArray            Attestation parameters (format: "type=sbom,generator=image")
      --build-arg stringArray         Set build-time variables
  -o, --output stringArray            Output destination (format: "type=local,dest=path")
      --provenance string             Shorthand for "--attest=type=provenance"
      --pull                          Always attempt to pull all referenced images
      --sbom string                   Shorthand for "--attest=type=sbom"
  -t, --tag stringArray               Name and optionally a tag (format: "name:tag")
"""
LEGACY_HELP = """
Usage:  docker build [OPTIONS] PATH | URL | -

Build an image from a Dockerfile

Options:
      --add-host list           Add a custom host-to-IP mapping (host:ip)
      --build-arg list          Set build-time variables
      --force-rm                Always remove intermediate containers
      --network string          Set the networking mode for the RUN instructions during build (default "default")
  -t, --tag list                Name and optionally a tag in the 'name:tag' format
"""


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


def test_build_argv_puts_extra_flags_before_the_context() -> None:
    argv = build_argv(
        context=Path("/ctx"),
        dockerfile=Path("/ctx/Dockerfile"),
        tag="t",
        build_args={"A": "1"},
        extra_flags=NO_ATTESTATIONS,
    )
    assert argv[-3:] == ["--provenance=false", "--sbom=false", "/ctx"]
    assert "--provenance=false" not in build_argv(context=Path("/c"), dockerfile=Path("/c/D"), tag="t", build_args={})


def test_no_attestation_flags_only_where_the_builder_offers_both() -> None:
    assert flags_from_help(BUILDX_HELP) == ["--provenance=false", "--sbom=false"]
    assert flags_from_help(LEGACY_HELP) == []  # the legacy builder refuses them: "unknown flag: --provenance"
    assert flags_from_help(BUILDX_HELP.replace("--sbom", "--something")) == []


def test_run_argv_is_hardened_and_puts_the_command_after_the_image() -> None:
    spec = ContainerSpec(
        name="w", image="ocr:dev", command=("python", "-m", "service.jobs.worker"), env={"OCR_PORT": "8123"}
    )
    argv = run_argv(spec)
    assert "--detach" in argv and "--rm" not in argv  # the exit code must survive the stop
    assert "--read-only" in argv
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"
    assert argv[argv.index("--user") + 1] == "10001"
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--env") + 1] == "OCR_PORT=8123"
    assert argv[-4:] == ["ocr:dev", "python", "-m", "service.jobs.worker"]


def test_run_argv_without_read_only() -> None:
    argv = run_argv(ContainerSpec(name="a", image="i", read_only=False, tmpfs=()))
    assert "--read-only" not in argv and "--tmpfs" not in argv


def test_oneshot_and_stop_argv() -> None:
    assert oneshot_argv("i", ["id", "-u"])[-3:] == ["i", "id", "-u"]
    assert "none" in oneshot_argv("i", ["true"])
    argv = oneshot_argv("i", ["true"], network="host", env={"B": "2", "A": "1"})
    assert argv[argv.index("--network") + 1] == "host"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--env"] == ["A=1", "B=2"]
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


def test_a_failed_save_leaves_no_archive_behind(tmp_path: Path) -> None:
    """With or without an engine, saving an image that does not exist fails, and neither the archive nor
    its temporary file is left where a cluster would load it."""
    archive = tmp_path / "images" / "missing.tar"
    with pytest.raises(HarnessError):
        save_image(f"ocr-test-missing-{uuid.uuid4().hex[:8]}:none", archive)
    assert list(archive.parent.iterdir()) == []


# --- against the Docker engine, when one answers -------------------------------------------------------


@pytest.fixture
def tiny_image(tmp_path: Path) -> Iterator[str]:
    """An image built here from scratch (no registry, no base image) with the tier's own build command line."""
    try:
        docker.engine_version(timeout=10)
    except TargetUnavailable as exc:
        pytest.skip(f"needs a Docker engine: {exc}")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (context / "hello.txt").write_text("hello\n")
    tag = f"ocr-test-tiny:{uuid.uuid4().hex[:8]}"
    argv = build_argv(
        context=context,
        dockerfile=context / "Dockerfile",
        tag=tag,
        build_args={},
        extra_flags=attestation_flags(),
    )
    commands.run(argv, timeout=300)  # this engine's builder accepts what attestation_flags chose
    yield tag
    docker.docker("image", "rm", "--force", tag)


def test_save_image_writes_an_archive_that_loads_back(tiny_image: str, tmp_path: Path) -> None:
    archive = save_image(tiny_image, tmp_path / "out" / "tiny.tar")
    assert archive == tmp_path / "out" / "tiny.tar" and archive.is_file()
    assert [p.name for p in archive.parent.iterdir()] == ["tiny.tar"]
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [tiny_image]
    image_id = docker.docker("image", "inspect", "--format", "{{.Id}}", tiny_image)
    docker.docker("image", "rm", tiny_image)
    docker.docker("load", "--input", str(archive))
    assert docker.docker("image", "inspect", "--format", "{{.Id}}", tiny_image) == image_id


def test_the_save_command_writes_the_archive(tiny_image: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = cli.build_parser().parse_args(["image", "save", "--tag", tiny_image, "--output", str(tmp_path / "a.tar")])
    assert args.func(args) == 0
    assert (tmp_path / "a.tar").is_file() and "kind load image-archive" in capsys.readouterr().out
    assert archive_path("dev.local/ocr:dev") == Path("artifacts/image/dev.local_ocr_dev.tar")
