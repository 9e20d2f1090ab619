"""Preflight and tools: each missing or unsuitable thing is named with how to get it, all in one message.

The tools are stand-in scripts on PATH that answer like the real ones (the I/O boundary of a unit test);
what is under test is the harness's reading of their answers.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.provisioning import preflight, tools
from harness.provisioning.profiles import profile
from harness.provisioning.spec import Spec


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the stand-ins (and sh), and an empty tool cache."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("sh", "cat"):
        (directory / name).symlink_to(Path("/bin") / name)
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.setenv("HARNESS_TOOLS_DIR", str(tmp_path / "cache"))
    return directory


def kind_spec(tmp_path: Path, name: str = "milestone3") -> Spec:
    return Spec(profile(name), tmp_path, host_port=18080)


def test_nothing_installed_is_one_message_naming_everything(bin_dir: Path, tmp_path: Path) -> None:
    report = preflight.check(kind_spec(tmp_path))
    with pytest.raises(preflight.PreflightFailed) as caught:
        report.require()
    head, *problems = str(caught.value).splitlines()
    assert head == f"cannot provision the platform here ({len(problems)} to fix):"
    assert all(line.startswith("  - ") for line in problems) and len(problems) == 4
    message = str(caught.value)
    for name in ("kubectl", "helm", "kind", "docker"):
        assert name in message
    assert "harness preflight --install-tools" in message and "docs.docker.com" in message


def test_suitable_tools_and_a_big_enough_docker_pass(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "kind", 'echo "kind v0.31.0 go1.25.5 linux/amd64"\n')
    fake_tool(bin_dir, "helm", 'echo "v3.19.0+g3d8990f"\n')
    fake_tool(bin_dir, "kubectl", """echo '{"clientVersion": {"gitVersion": "v1.34.2"}}'\n""")
    fake_tool(bin_dir, "docker", """echo '{"NCPU": 4, "MemTotal": 8268000000, "ServerErrors": null}'\n""")
    report = preflight.check(kind_spec(tmp_path))
    report.require()
    assert report.facts["docker"] == "4 CPUs, 7.7 GiB"


def test_kubectl_out_of_skew_and_a_small_docker_are_named(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "kind", 'echo "kind v0.31.0"\n')
    fake_tool(bin_dir, "helm", 'echo "v3.19.0"\n')
    fake_tool(bin_dir, "kubectl", """echo '{"clientVersion": {"gitVersion": "v1.37.1"}}'\n""")
    fake_tool(bin_dir, "docker", """echo '{"NCPU": 2, "MemTotal": 4000000000}'\n""")
    problems = preflight.check(kind_spec(tmp_path)).problems
    assert len(problems) == 2, problems
    assert "1.37.1" in problems[0] and "skew" in problems[0] and "--install-tools" in problems[0]
    assert "needs 4 CPUs and 8 GiB" in problems[1] and "2 CPUs" in problems[1]
    # Docker Engine, not Desktop; no profile fits 2 CPUs, so none is suggested
    assert "a Docker host with more CPUs and memory" in problems[1] and "profile that fits" not in problems[1]


def test_a_docker_that_does_not_answer_is_said_so(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(
        bin_dir, "docker", 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2\nexit 1\n'
    )
    with pytest.raises(HarnessError, match="Docker does not answer: Cannot connect"):
        preflight.docker_info()


def test_an_existing_context_must_exist(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "helm", 'echo "v3.19.0"\n')
    fake_tool(
        bin_dir,
        "kubectl",
        'case "$1" in version) echo \'{"clientVersion": {"gitVersion": "v1.35.0"}}\';; '
        "config) echo minikube; echo kind-other;; esac\n",
    )
    spec = Spec(profile("milestone1"), tmp_path, kube_context="gke-prod", image_loader="registry")
    problems = preflight.check(spec, needs_docker=False).problems
    assert problems == ["no kubeconfig context 'gke-prod'; have minikube, kind-other"]


def test_the_tool_cache_comes_before_path(bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "kind", 'echo "kind v0.20.0"\n')
    cache = tools.tools_dir()
    cache.mkdir(parents=True)
    fake_tool(cache, "kind", 'echo "kind v0.31.0"\n')
    assert tools.resolve("kind") == str(cache / "kind")
    assert tools.installed_version("kind") == (0, 31, 0)


def test_downloads_are_refused_unless_their_digest_matches() -> None:
    data = b"a kind binary"
    assert tools.verified(data, hashlib.sha256(data).hexdigest(), "kind") == data
    with pytest.raises(HarnessError, match="does not match the pinned"):
        tools.verified(data + b"!", hashlib.sha256(data).hexdigest(), "kind")
    with pytest.raises(HarnessError, match="no sha256 is pinned for kind on plan9-mips"):
        tools.pinned_sha256("kind", "plan9-mips")


def test_download_urls_are_the_pinned_releases() -> None:
    assert tools.download_url("kubectl", "linux-amd64") == "https://dl.k8s.io/release/v1.35.0/bin/linux/amd64/kubectl"
    assert tools.download_url("helm", "darwin-arm64") == "https://get.helm.sh/helm-v3.19.0-darwin-arm64.tar.gz"
    assert tools.download_url("kind", "linux-arm64").endswith("/v0.31.0/kind-linux-arm64")


def test_helm_is_taken_out_of_its_archive() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in (("linux-amd64/README.md", b"readme"), ("linux-amd64/helm", b"#!helm")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    assert tools.extract_helm(buffer.getvalue()) == b"#!helm"
    with pytest.raises(HarnessError, match="no helm binary"):
        tools.extract_helm(_empty_tar())


def _empty_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz"):
        pass
    return buffer.getvalue()


def test_versions_are_read_from_what_tools_print() -> None:
    assert tools.parse_version("kind v0.31.0 go1.25.5 linux/amd64") == (0, 31, 0)
    assert tools.parse_version(json.dumps({"gitVersion": "v1.35.0"})) == (1, 35, 0)
    assert tools.parse_version("no version here") is None


def test_down_always_deletes_an_existing_cluster_even_when_the_log_export_fails(bin_dir: Path, tmp_path: Path) -> None:
    from harness.provisioning.env import teardown

    calls = tmp_path / "calls"
    fake_tool(
        bin_dir,
        "kind",
        f'echo "$@" >> {calls}\n'
        'case "$1" in get) echo ocr-platform;; export) echo "export failed: disk full" >&2; exit 1;; esac\n',
    )
    said: list[str] = []
    teardown(kind_spec(tmp_path), log_dir=tmp_path / "logs", say=said.append)
    lines = calls.read_text().splitlines()
    assert lines[0] == "get clusters"
    assert any(line.startswith("export logs") for line in lines)
    assert lines[-1] == "delete cluster --name ocr-platform"
    assert any("kind export logs failed" in line for line in said)


def test_down_without_a_cluster_is_nothing_to_do(bin_dir: Path, tmp_path: Path) -> None:
    from harness.provisioning.env import teardown

    said: list[str] = []
    teardown(kind_spec(tmp_path), log_dir=None, say=said.append)
    assert said == ["kind is not installed: there is no kind cluster ocr-platform to delete"]
    calls = tmp_path / "calls"
    fake_tool(bin_dir, "kind", f'echo "$@" >> {calls}\ncase "$1" in get) echo other-cluster;; esac\n')
    teardown(kind_spec(tmp_path), log_dir=None, say=said.append)
    assert calls.read_text().splitlines() == ["get clusters"]
    assert said[-1] == "no kind cluster ocr-platform: nothing to delete"
