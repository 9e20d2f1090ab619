"""Per-cluster API keys, and rendering an overlay with them.

The committed tree renders with placeholder keys (``components/istio/api-keys.env.example``). For a real
cluster, :func:`generate_api_keys` writes random keys to ``manifests/secrets/api-keys.env`` and
:func:`render_with_keys` renders an overlay through a kustomization written next to them
(``manifests/secrets/kustomization.yaml``) that replaces the placeholder ConfigMap and re-applies the istio
component's replacements (read from ``components/istio/api-keys-replacements.yaml``, so where keys go is said
once). Both files are git-ignored; the keys end up only in the gateway's AuthorizationPolicy.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.manifests.objects import Obj
from harness.manifests.paths import MANIFESTS_DIR, SECRETS_DIR
from harness.manifests.render import overlay_dir, render
from harness.manifests.yamlio import load

API_KEY_NAMES = ("OCR_API_KEY_PRIMARY", "OCR_API_KEY_SECONDARY")
KEYS_FILE = "api-keys.env"
CONFIGMAP = "ocr-api-keys"
CONFIGMAP_NAMESPACE = "istio-system"
ISTIO_COMPONENT = "components/istio"
REPLACEMENTS_FILE = "api-keys-replacements.yaml"


def new_key() -> str:
    """A random API key: 32 bytes, URL-safe (a plain HTTP header value)."""
    return secrets.token_urlsafe(32)


def generate_api_keys(
    directory: Path = SECRETS_DIR, *, force: bool = False, make_key: Callable[[], str] = new_key
) -> Path:
    """Write fresh keys to ``<directory>/api-keys.env`` (mode 0600); keep existing keys unless ``force``."""
    path = directory / KEYS_FILE
    if path.exists() and not force:
        read_api_keys(path)  # refuse to keep a file that would not render
        return path
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["# Per-cluster API keys for the ingress gateway: generated, git-ignored, never committed."]
    lines += [f"{name}={make_key()}" for name in API_KEY_NAMES]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def read_api_keys(path: Path = SECRETS_DIR / KEYS_FILE) -> dict[str, str]:
    """The keys of an env file, checked to hold every expected name with a non-empty value."""
    if not path.is_file():
        raise HarnessError(f"no API keys at {path}: run `harness manifests keys` first")
    keys: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            if sep:
                keys[name.strip()] = value.strip()
    missing = [name for name in API_KEY_NAMES if not keys.get(name)]
    if missing:
        raise HarnessError(f"{path} lacks {', '.join(missing)}: regenerate it with `harness manifests keys --force`")
    return keys


def uses_api_keys(overlay: str, overlays_dir: Path | None = None) -> bool:
    """Whether an overlay includes the istio component (the one that needs API keys)."""
    directory = overlay_dir(overlay) if overlays_dir is None else overlay_dir(overlay, overlays_dir)
    kustomization = load((directory / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    return any(str(entry).rstrip("/").endswith(ISTIO_COMPONENT) for entry in kustomization.get("components") or [])


def cluster_kustomization(overlay: str, replacements: list[Mapping[str, object]]) -> dict[str, object]:
    """The per-cluster kustomization: the overlay, the real keys instead of the placeholders, re-placed."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../overlays/{overlay}"],
        "configMapGenerator": [
            {
                "name": CONFIGMAP,
                "namespace": CONFIGMAP_NAMESPACE,
                "behavior": "replace",
                "envs": [KEYS_FILE],
                "options": {
                    "disableNameSuffixHash": True,
                    "annotations": {"config.kubernetes.io/local-config": "true"},
                },
            }
        ],
        "replacements": replacements,
    }


def write_cluster_kustomization(overlay: str, manifests_dir: Path = MANIFESTS_DIR) -> Path:
    """Write ``<manifests>/secrets/kustomization.yaml`` for an overlay; the keys must exist already."""
    secrets_dir = manifests_dir / "secrets"
    read_api_keys(secrets_dir / KEYS_FILE)
    source = manifests_dir / ISTIO_COMPONENT / REPLACEMENTS_FILE
    replacements = load(source.read_text(encoding="utf-8"))
    if not isinstance(replacements, list):
        raise HarnessError(f"{source} is not a list of replacements")
    path = secrets_dir / "kustomization.yaml"
    header = "# Written by harness.manifests.secrets for one cluster render; git-ignored.\n"
    path.write_text(
        header + yaml.safe_dump(cluster_kustomization(overlay, replacements), sort_keys=False), encoding="utf-8"
    )
    return path


def render_with_keys(overlay: str, *, manifests_dir: Path = MANIFESTS_DIR, kubectl: str | None = None) -> list[Obj]:
    """Render an overlay with this cluster's API keys (overlays without the istio component need none)."""
    overlays_dir = manifests_dir / "overlays"
    if not uses_api_keys(overlay, overlays_dir):
        return render(overlay_dir(overlay, overlays_dir), kubectl=kubectl)
    return render(write_cluster_kustomization(overlay, manifests_dir).parent, kubectl=kubectl)
