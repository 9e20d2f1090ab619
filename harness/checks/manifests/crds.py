"""The CustomResourceDefinitions of the pinned platform versions: where they are, loading, and fetching.

Validation reads CRDs from a directory (any depth, any number of documents per file). Which directory:
``--crd-dir``, else ``$OCR_CRD_DIR``, else ``../shared/crds`` beside the repository when it exists, else the
cache ``~/.cache/ocr-platform/crds``, which :func:`download_crds` (``harness manifests fetch-crds``) fills from
the upstream tags of the versions pinned in :mod:`harness.provisioning.versions` (the only function here that
touches the network; nothing calls it implicitly). A fetch writes into a temporary folder beside the
destination and puts it in place only once every file is there, so a failed fetch leaves no empty or partial
folder behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.provisioning import versions
from harness.provisioning.paths import REPO_ROOT
from harness.provisioning.yamlio import load_all

CRD_DIR_ENV = "OCR_CRD_DIR"
SHARED_CRD_DIR = REPO_ROOT.parent / "shared" / "crds"
DOWNLOAD_TIMEOUT_S = 60.0


def cache_crd_dir() -> Path:
    return Path.home() / ".cache" / "ocr-platform" / "crds"


def default_crd_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$OCR_CRD_DIR``, else ``../shared/crds`` if present, else the download cache."""
    env = os.environ if environ is None else environ
    if env.get(CRD_DIR_ENV):
        return Path(env[CRD_DIR_ENV])
    if SHARED_CRD_DIR.is_dir():
        return SHARED_CRD_DIR
    return cache_crd_dir()


def fetch_command(directory: Path) -> str:
    """The command that fills ``directory`` with the pinned CRDs (the venv's ``harness`` when run from one)."""
    script = Path(sys.executable).parent / "harness"
    harness = str(script) if script.exists() else "harness"
    dest = "" if directory == cache_crd_dir() else f" --dest {directory}"
    return f"{harness} manifests fetch-crds{dest}"


def crd_dir_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot serve as the CRD folder (absent, or no YAML in it) and how to fill it; None
    when it has YAML files (whether they hold CRDs is for :func:`load_crds` to say)."""
    if directory.is_dir() and any(p.suffix in {".yaml", ".yml"} for p in directory.rglob("*")):
        return None
    state = "does not exist" if not directory.exists() else "holds no YAML file"
    return (
        f"CRD directory {directory} {state}: fetch the pinned CRDs with `{fetch_command(directory)}` (network), "
        f"or pass --crd-dir / set {CRD_DIR_ENV} to a folder that has them"
    )


@dataclass(frozen=True)
class CrdVersion:
    """One served version of one custom kind, with the schema the API server would apply."""

    group: str
    version: str
    kind: str
    namespaced: bool
    schema: dict[str, Any]
    source: Path


def load_crds(directory: Path) -> dict[tuple[str, str, str], CrdVersion]:
    """Every served version of every CRD under a directory, by (group, version, kind)."""
    if (problem := crd_dir_problem(directory)) is not None:
        raise HarnessError(problem)
    found: dict[tuple[str, str, str], CrdVersion] = {}
    for path in sorted(p for p in directory.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file()):
        try:
            documents = load_all(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise HarnessError(f"{path} is not valid YAML: {exc}") from exc
        for doc in documents:
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                for crd in _versions(doc, path):
                    found[(crd.group, crd.version, crd.kind)] = crd
    if not found:
        raise HarnessError(
            f"no CustomResourceDefinition found under {directory}: fetch the pinned CRDs with "
            f"`{fetch_command(directory)}` (network)"
        )
    return found


def _versions(doc: dict[str, Any], source: Path) -> list[CrdVersion]:
    spec = doc.get("spec") or {}
    group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    out = []
    for entry in spec.get("versions") or []:
        schema = (entry.get("schema") or {}).get("openAPIV3Schema")
        if entry.get("served", True) and isinstance(schema, dict):
            out.append(CrdVersion(group, entry["name"], kind, namespaced, schema, source))
    return out


@dataclass(frozen=True)
class CrdSource:
    """One upstream file of CRDs and where it goes in the cache."""

    url: str
    filename: str


def crd_sources() -> list[CrdSource]:
    """The upstream CRD files at the tags of the pinned versions (the platform's custom kinds)."""
    raw = "https://raw.githubusercontent.com"
    keda = versions.KEDA.version if versions.KEDA.version.startswith("v") else f"v{versions.KEDA.version}"
    kps = f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK.version}"
    knative = _knative_tag(versions.KNATIVE_SERVING)
    sources = [
        CrdSource(
            f"{raw}/kserve/kserve/{versions.KSERVE_VERSION}/config/crd/full/serving.kserve.io_{name}.yaml",
            f"kserve/serving.kserve.io_{name}.yaml",
        )
        for name in ("inferenceservices", "servingruntimes", "clusterservingruntimes")
    ]
    sources += [
        CrdSource(f"{raw}/kedacore/keda/{keda}/config/crd/bases/keda.sh_{name}.yaml", f"keda/keda.sh_{name}.yaml")
        for name in ("scaledobjects", "scaledjobs", "triggerauthentications", "clustertriggerauthentications")
    ]
    sources.append(
        CrdSource(
            f"{raw}/istio/istio/{versions.ISTIO_VERSION}/manifests/charts/base/files/crd-all.gen.yaml",
            "istio/crd-all.gen.yaml",
        )
    )
    sources += [
        CrdSource(
            f"{raw}/prometheus-community/helm-charts/{kps}/charts/kube-prometheus-stack/charts/crds/crds/"
            f"crd-{name}.yaml",
            f"prometheus-operator/monitoring.coreos.com_{name}.yaml",
        )
        for name in ("podmonitors", "servicemonitors", "prometheusrules")
    ]
    sources += [
        CrdSource(
            f"{raw}/knative/serving/{knative}/config/core/300-resources/{name}.yaml", f"knative-serving/{name}.yaml"
        )
        for name in ("service", "configuration", "revision", "route")
    ]
    return sources


def _knative_tag(version: str) -> str:
    """Knative's release tag for a version: ``1.23`` -> ``knative-v1.23.0``."""
    parts = version.removeprefix("v").split(".")
    return "knative-v" + ".".join(parts + ["0"] * (3 - len(parts)))


def download_crds(dest: Path | None = None, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> list[Path]:
    """Fetch :func:`crd_sources` into ``dest`` (default: the cache). Network access; never called implicitly.

    The files go to a temporary folder beside ``dest``, which replaces ``dest`` only when all are fetched:
    a failure leaves ``dest`` as it was (absent, or the previous complete set)."""
    target = dest or cache_crd_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-fetching-", dir=target.parent))
    try:
        for source in crd_sources():
            path = staging / source.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen(source.url, timeout=timeout) as response:
                    body = response.read()
            except OSError as exc:
                raise HarnessError(f"could not download {source.url}: {exc}; {target} is left as it was") from exc
            path.write_bytes(body)
        _replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / source.filename for source in crd_sources()]


def _replace_dir(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``, the old ``target`` (if any) removed only once ``new`` is there."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
