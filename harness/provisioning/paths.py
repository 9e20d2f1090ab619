"""Where the manifests live in the repository."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # harness/provisioning/paths.py
MANIFESTS_DIR = REPO_ROOT / "manifests"
OVERLAYS_DIR = MANIFESTS_DIR / "overlays"
COMPONENTS_DIR = MANIFESTS_DIR / "components"
# Per-cluster, git-ignored: generated API keys and the kustomization that renders an overlay with them.
SECRETS_DIR = MANIFESTS_DIR / "secrets"
