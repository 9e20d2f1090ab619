"""Per-cluster secrets, and rendering an overlay with them.

Two sets of secrets are generated per cluster, never committed:

- the gateway's API keys (istio component): the keys themselves in ``manifests/secrets/api-keys.env``, read
  only by the harness (the acceptance steps send them), and their salted hashes in
  ``manifests/secrets/api-key-hashes.yaml``, a patch of the Secret ``ocr-api-key-hashes`` that the gateway's
  authorizer reads. No key is in any rendered object: the cluster gets the hashes alone.
- the job Redis' password (jobs component): ``manifests/secrets/redis-auth.env``, copied into the Secret
  ``ocr-redis-auth`` that Redis, the predictor, the workers and KEDA read.

The committed tree renders with placeholders (values or comments starting with ``placeholder-``, which a
deploy refuses): the Secret ``ocr-api-key-hashes`` holds no key at all, and the jobs component turns its env
file into a local-config ConfigMap whose value its replacements copy into ``ocr-redis-auth``. For a
cluster, :func:`generate_secrets` writes random values, and :func:`render_with_keys` renders an overlay
through a kustomization written next to them (``manifests/secrets/kustomization.yaml``) that patches the
hashes Secret, replaces each placeholder ConfigMap the overlay uses and re-applies that component's
replacements (read from the component, so where a secret goes is said once). Every generated file is
git-ignored.

Rotating a key: ``harness manifests keys --rotate primary`` (or ``secondary``) replaces that key and its
hash, and ``kubectl apply -f manifests/secrets/api-key-hashes.yaml`` updates the Secret; the authorizer
reloads it without a restart (see manifests/README.md).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.provisioning import keyhash
from harness.provisioning.identity import NAMESPACE
from harness.provisioning.objects import Obj
from harness.provisioning.paths import MANIFESTS_DIR, SECRETS_DIR
from harness.provisioning.render import overlay_dir, render
from harness.provisioning.yamlio import load


@dataclass(frozen=True)
class SecretSet:
    """Secrets of one component: an env file of ``names``; for a set placed by replacements, the ConfigMap
    made from that file and the component's replacements file."""

    what: str  # for messages: "API keys"
    component: str  # relative to manifests/
    env_file: str  # in manifests/secrets/
    names: tuple[str, ...]
    header: str  # first line of a generated env file
    configmap: str | None = None
    namespace: str | None = None
    replacements: str | None = None  # in the component's directory


API_KEYS = SecretSet(
    what="API keys",
    component="components/istio",
    env_file="api-keys.env",
    names=("OCR_API_KEY_PRIMARY", "OCR_API_KEY_SECONDARY"),
    header="# Per-cluster API keys for the ingress gateway: generated, git-ignored, never committed. The cluster"
    " holds only their hashes (api-key-hashes.yaml).",
)
REDIS_AUTH = SecretSet(
    what="job Redis password",
    component="components/jobs",
    env_file="redis-auth.env",
    names=("OCR_REDIS_PASSWORD",),
    header="# Per-cluster password of the job Redis (Secret ocr-redis-auth): generated, git-ignored, never committed.",
    configmap="ocr-redis-auth-source",
    namespace=NAMESPACE,
    replacements="redis-auth-replacements.yaml",
)
SECRET_SETS = (API_KEYS, REDIS_AUTH)

# Kept for callers that name the API keys' parts.
API_KEY_NAMES = API_KEYS.names
KEYS_FILE = API_KEYS.env_file
ISTIO_COMPONENT = API_KEYS.component

# Each key's id and client (the tenant the authorizer names; the clients the acceptance harness sends each
# key for, harness.acceptance.targets.kube.API_KEY_CLIENTS).
# Two keys, so one can be rotated while the other stays valid.
API_KEY_IDS = {"OCR_API_KEY_PRIMARY": ("primary", "team-a"), "OCR_API_KEY_SECONDARY": ("secondary", "team-b")}
HASHES_FILE = "api-key-hashes.yaml"  # in manifests/secrets/
HASHES_SECRET = "ocr-api-key-hashes"
HASHES_NAMESPACE = NAMESPACE
HASHES_KEY = "hashes.jsonl"


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
    directory: Path = SECRETS_DIR,
    *,
    force: bool = False,
    make_key: Callable[[], str] = new_key,
    rotate: str | None = None,
) -> Path:
    """Write fresh keys to ``<directory>/api-keys.env`` (mode 0600) and their hashes to
    ``<directory>/api-key-hashes.yaml``; keep existing keys unless ``force``. ``rotate`` (a key id, ``primary``
    or ``secondary``, or its variable's name) replaces that one key and keeps the other."""
    path = _generate(API_KEYS, directory, force, make_key) if rotate is None else _rotate(directory, rotate, make_key)
    write_key_hashes(directory)
    return path


def _rotate(directory: Path, which: str, make_key: Callable[[], str]) -> Path:
    names = {key_id: name for name, (key_id, _) in API_KEY_IDS.items()}
    name = names.get(which, which)
    if name not in API_KEY_IDS:
        raise HarnessError(f"no API key {which!r} to rotate (known: {', '.join(names)})")
    path = directory / API_KEYS.env_file
    keys = _read(API_KEYS, path)
    keys[name] = make_key()
    lines = [API_KEYS.header] + [f"{n}={keys[n]}" for n in API_KEYS.names]
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it in one step (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".new")
    descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(fresh, path)


def hashes_secret(keys: Mapping[str, str]) -> dict[str, object]:
    """The Secret ``ocr-api-key-hashes`` for these keys: one salted hash per key (the authorizer's format,
    ``harness.provisioning.keyhash``)."""
    lines = [keyhash.hash_line(*API_KEY_IDS[name], keys[name]) for name in API_KEYS.names]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": HASHES_SECRET,
            "namespace": HASHES_NAMESPACE,
            "labels": {"app.kubernetes.io/name": "ocr-authz", "app.kubernetes.io/part-of": "ocr-platform"},
        },
        "type": "Opaque",
        "stringData": {HASHES_KEY: "\n".join(lines) + "\n"},
    }


def read_key_hashes(path: Path) -> str:
    """The hashes file inside a generated Secret manifest."""
    manifest = load(path.read_text(encoding="utf-8")) or {}
    text = (manifest.get("stringData") or {}).get(HASHES_KEY) if isinstance(manifest, dict) else None
    if not isinstance(text, str):
        raise HarnessError(f"{path} is not a Secret with stringData.{HASHES_KEY}")
    return text


def _hashes_match(path: Path, keys: Mapping[str, str]) -> bool:
    """Whether a generated hashes Secret admits exactly these keys, each under its id and tenant."""
    try:
        text = read_key_hashes(path)
    except (OSError, HarnessError, yaml.YAMLError):
        return False
    return keyhash.admits_exactly(text, {keys[name]: API_KEY_IDS[name] for name in API_KEYS.names})


def write_key_hashes(directory: Path = SECRETS_DIR) -> Path:
    """``<directory>/api-key-hashes.yaml`` for the keys in ``api-keys.env``: kept when it already matches them
    (fresh salts would change the Secret on every render), written anew otherwise."""
    keys = _read(API_KEYS, directory / API_KEYS.env_file)
    path = directory / HASHES_FILE
    if not _hashes_match(path, keys):
        header = (
            "# Per-cluster API key hashes (Secret ocr-api-key-hashes, read by the gateway's authorizer): written by\n"
            "# `harness manifests keys`, git-ignored. Apply it alone to rotate: kubectl apply -f <this file>\n"
        )
        _write_private(path, header + yaml.safe_dump(hashes_secret(keys), sort_keys=False))
    return path


def generate_redis_password(
    directory: Path = SECRETS_DIR, *, force: bool = False, make_password: Callable[[], str] = new_key
) -> Path:
    """Write a fresh password to ``<directory>/redis-auth.env`` (mode 0600); keep an existing one unless
    ``force`` (a running Redis keeps the password it started with: replacing it means restarting Redis)."""
    return _generate(REDIS_AUTH, directory, force, make_password)


def generate_secrets(directory: Path = SECRETS_DIR, *, force: bool = False) -> list[Path]:
    """Every per-cluster secret (API keys with their hashes, the job Redis password); existing ones are kept
    unless ``force``. What a deploy calls before :func:`render_with_keys`."""
    return [
        generate_api_keys(directory, force=force),
        directory / HASHES_FILE,
        generate_redis_password(directory, force=force),
    ]


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
    overlay: str,
    sets: Sequence[tuple[SecretSet, list[Mapping[str, object]]]],
    patches: Sequence[str] = (),
) -> dict[str, object]:
    """The per-cluster kustomization: the overlay, each set's real values instead of its placeholders (placed
    again by that set's replacements), and the generated Secret patches (the API key hashes)."""
    kustomization: dict[str, object] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../overlays/{overlay}"],
    }
    generated = [
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
        if spec.configmap
    ]
    if generated:
        kustomization["configMapGenerator"] = generated
        kustomization["replacements"] = [entry for _, replacements in sets for entry in replacements]
    if patches:
        kustomization["patches"] = [{"path": path} for path in patches]
    return kustomization


def write_cluster_kustomization(overlay: str, manifests_dir: Path = MANIFESTS_DIR) -> Path:
    """Write ``<manifests>/secrets/kustomization.yaml`` for an overlay; its secrets must exist already (the API
    key hashes are brought up to date with the keys)."""
    secrets_dir = manifests_dir / "secrets"
    sets: list[tuple[SecretSet, list[Mapping[str, object]]]] = []
    patches: list[str] = []
    for spec in secret_sets_for(overlay, manifests_dir / "overlays"):
        _read(spec, secrets_dir / spec.env_file)
        if spec is API_KEYS:
            patches.append(write_key_hashes(secrets_dir).name)
        if spec.replacements is None:
            continue
        source = manifests_dir / spec.component / spec.replacements
        replacements = load(source.read_text(encoding="utf-8"))
        if not isinstance(replacements, list):
            raise HarnessError(f"{source} is not a list of replacements")
        sets.append((spec, replacements))
    path = secrets_dir / "kustomization.yaml"
    header = "# Written by harness.provisioning.secrets for one cluster render; git-ignored.\n"
    text = yaml.safe_dump(cluster_kustomization(overlay, sets, patches), sort_keys=False)
    path.write_text(header + text, encoding="utf-8")
    return path


def render_with_keys(overlay: str, *, manifests_dir: Path = MANIFESTS_DIR, kubectl: str | None = None) -> list[Obj]:
    """Render an overlay with this cluster's secrets (overlays whose components need none render as they are)."""
    overlays_dir = manifests_dir / "overlays"
    if not uses_secrets(overlay, overlays_dir):
        return render(overlay_dir(overlay, overlays_dir), kubectl=kubectl)
    return render(write_cluster_kustomization(overlay, manifests_dir).parent, kubectl=kubectl)
