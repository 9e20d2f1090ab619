"""Helpers shared by the manifests tests (fixtures live in conftest.py)."""

from __future__ import annotations

from harness.manifests.objects import Obj
from harness.manifests.paths import REPO_ROOT
from harness.manifests.render import overlay_names

# CI lays the upstream CRDs of the pinned versions beside the repository.
CRD_DIR = REPO_ROOT.parent / "shared" / "crds"
OVERLAYS = overlay_names()


def the(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of a kind and name in a render."""
    found = [o for o in objects if o.get("kind") == kind and o["metadata"].get("name") == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
