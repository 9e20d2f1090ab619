"""Per-cluster secrets, and rendering an overlay with them.

Two sets of secrets are generated per cluster, never committed:

- the gateway's API keys (istio component): ``manifests/secrets/api-keys.env``, copied into the gateway's
  AuthorizationPolicy;
- the job Redis' password (jobs component): ``manifests/secrets/redis-auth.env``, copied into the Secret
  ``ocr-redis-auth`` that Redis, the predictor, the workers and KEDA read.

The committed tree renders with placeholders (each component's ``*.env.example``, values starting with
``placeholder-``, which a deploy refuses). Each component turns its env file into a local-config ConfigMap
and copies the values where they belong with a replacements file. For a cluster, :func:`generate_secrets`
writes random values, and :func:`render_with_keys` renders an overlay through a kustomization written next
to them (``manifests/secrets/kustomization.yaml``) that replaces each placeholder ConfigMap the overlay uses
and re-applies that component's replacements (read from the component, so where a secret goes is said
once). Every generated file is git-ignored.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.manifests.objects import Obj
from harness.manifests.paths import MANIFESTS_DIR, SECRETS_DIR
from harness.manifests.render import overlay_dir, render
from harness.manifests.yamlio import load


@dataclass(frozen=True)
class SecretSet:
    """Secrets of one component: an env file of ``names``, the ConfigMap made from it, its replacements."""

    what: str  # for messages: "API keys"
    component: str  # relative to manifests/
    env_file: str  # in manifests/secrets/
    names: tuple[str, ...]
    configmap: str
    namespace: str
    replacements: str  # in the component's directory
    header: str  # first line of a generated env file


API_KEYS = SecretSet(
    what="API keys",
    component="components/istio",
    env_file="api-keys.env",
    names=("OCR_API_KEY_PRIMARY", "OCR_API_KEY_SECONDARY"),
    configmap="ocr-api-keys",
    namespace="istio-system",
    replacements="api-keys-replacements.yaml",
    header="# Per-cluster API keys for the ingress gateway: generated, git-ignored, never committed.",
)
REDIS_AUTH = SecretSet(
    what="job Redis password",
    component="components/jobs",
    env_file="redis-auth.env",
    names=("OCR_REDIS_PASSWORD",),
    configmap="ocr-redis-auth-source",
    namespace="ocr-dev",
    replacements="redis-auth-replacements.yaml",
    header="# Per-cluster password of the job Redis (Secret ocr-redis-auth): generated, git-ignored, never committed.",
)
SECRET_SETS = (API_KEYS, REDIS_AUTH)

# Kept for callers that name the API keys' parts.
API_KEY_NAMES = API_KEYS.names
KEYS_FILE = API_KEYS.env_file
CONFIGMAP = API_KEYS.configmap
CONFIGMAP_NAMESPACE = API_KEYS.namespace
ISTIO_COMPONENT = API_KEYS.component
REPLACEMENTS_FILE = API_KEYS.replacements


def new_key() -> str:
    """A random secret: 32 bytes, URL-safe (letters, digits, ``-`` and ``_``), so it is a plain HTTP header
    value and goes into a ``redis://:PASSWORD@host`` URL and a Redis config line without any quoting."""
    return secrets.token_urlsafe(32)


def _generate(spec: SecretSet, directory: Path, force: bool, make: Callable[[], str]) -> Path:
    path = directory / spec.env_file
    if path.exists() and not force:
        _read(spec, path)  # refuse to keep a file that would not render
        return path
    directory.mkdir(parents=True, exist_ok=True)
    lines = [spec.header] + [f"{name}={make()}" for name in spec.names]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _read(spec: SecretSet, path: Path) -> dict[str, str]:
    if not path.is_file():
        raise HarnessError(f"no {spec.what} at {path}: run `harness manifests keys` first")
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            if sep:
                values[name.strip()] = value.strip()
    missing = [name for name in spec.names if not values.get(name)]
    if missing:
        raise HarnessError(f"{path} lacks {', '.join(missing)}: regenerate it with `harness manifests keys --force`")
    return values


def generate_api_keys(
    directory: Path = SECRETS_DIR, *, force: bool = False, make_key: Callable[[], str] = new_key
) -> Path:
    """Write fresh keys to ``<directory>/api-keys.env`` (mode 0600); keep existing keys unless ``force``."""
    return _generate(API_KEYS, directory, force, make_key)


def generate_redis_password(
    directory: Path = SECRETS_DIR, *, force: bool = False, make_password: Callable[[], str] = new_key
) -> Path:
    """Write a fresh password to ``<directory>/redis-auth.env`` (mode 0600); keep an existing one unless
    ``force`` (a running Redis keeps the password it started with: replacing it means restarting Redis)."""
    return _generate(REDIS_AUTH, directory, force, make_password)


def generate_secrets(directory: Path = SECRETS_DIR, *, force: bool = False) -> list[Path]:
    """Every per-cluster secret (API keys and the job Redis password); existing ones are kept unless
    ``force``. What a deploy calls before :func:`render_with_keys`."""
    return [_generate(spec, directory, force, new_key) for spec in SECRET_SETS]


def read_api_keys(path: Path = SECRETS_DIR / KEYS_FILE) -> dict[str, str]:
    """The keys of an env file, checked to hold every expected name with a non-empty value."""
    return _read(API_KEYS, path)


def read_redis_password(path: Path = SECRETS_DIR / REDIS_AUTH.env_file) -> str:
    """The job Redis password of an env file."""
    return _read(REDIS_AUTH, path)["OCR_REDIS_PASSWORD"]


def _components(overlay: str, overlays_dir: Path | None) -> list[str]:
    directory = overlay_dir(overlay) if overlays_dir is None else overlay_dir(overlay, overlays_dir)
    kustomization = load((directory / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    return [str(entry).rstrip("/") for entry in kustomization.get("components") or []]


def secret_sets_for(overlay: str, overlays_dir: Path | None = None) -> list[SecretSet]:
    """The secret sets an overlay needs: those of the components it includes."""
    components = _components(overlay, overlays_dir)
    return [spec for spec in SECRET_SETS if any(entry.endswith(spec.component) for entry in components)]


def uses_api_keys(overlay: str, overlays_dir: Path | None = None) -> bool:
    """Whether an overlay includes the istio component (the one that needs API keys)."""
    return API_KEYS in secret_sets_for(overlay, overlays_dir)


def uses_secrets(overlay: str, overlays_dir: Path | None = None) -> bool:
    """Whether an overlay needs any per-cluster secret (API keys, the job Redis password)."""
    return bool(secret_sets_for(overlay, overlays_dir))


def cluster_kustomization(
    overlay: str, sets: Sequence[tuple[SecretSet, list[Mapping[str, object]]]]
) -> dict[str, object]:
    """The per-cluster kustomization: the overlay, each set's real values instead of its placeholders, placed
    again by that set's replacements."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../overlays/{overlay}"],
        "configMapGenerator": [
            {
                "name": spec.configmap,
                "namespace": spec.namespace,
                "behavior": "replace",
                "envs": [spec.env_file],
                "options": {
                    "disableNameSuffixHash": True,
                    "annotations": {"config.kubernetes.io/local-config": "true"},
                },
            }
            for spec, _ in sets
        ],
        "replacements": [entry for _, replacements in sets for entry in replacements],
    }


def write_cluster_kustomization(overlay: str, manifests_dir: Path = MANIFESTS_DIR) -> Path:
    """Write ``<manifests>/secrets/kustomization.yaml`` for an overlay; its secrets must exist already."""
    secrets_dir = manifests_dir / "secrets"
    sets = []
    for spec in secret_sets_for(overlay, manifests_dir / "overlays"):
        _read(spec, secrets_dir / spec.env_file)
        source = manifests_dir / spec.component / spec.replacements
        replacements = load(source.read_text(encoding="utf-8"))
        if not isinstance(replacements, list):
            raise HarnessError(f"{source} is not a list of replacements")
        sets.append((spec, replacements))
    path = secrets_dir / "kustomization.yaml"
    header = "# Written by harness.manifests.secrets for one cluster render; git-ignored.\n"
    path.write_text(header + yaml.safe_dump(cluster_kustomization(overlay, sets), sort_keys=False), encoding="utf-8")
    return path


def render_with_keys(overlay: str, *, manifests_dir: Path = MANIFESTS_DIR, kubectl: str | None = None) -> list[Obj]:
    """Render an overlay with this cluster's secrets (overlays whose components need none render as they are)."""
    overlays_dir = manifests_dir / "overlays"
    if not uses_secrets(overlay, overlays_dir):
        return render(overlay_dir(overlay, overlays_dir), kubectl=kubectl)
    return render(write_cluster_kustomization(overlay, manifests_dir).parent, kubectl=kubectl)
