"""Helpers shared by the manifests tests (fixtures live in conftest.py)."""

from __future__ import annotations

from harness.checks.manifests.crds import crd_dir_problem, default_crd_dir
from harness.provisioning.objects import Obj
from harness.provisioning.render import overlay_names

# The upstream CRDs of the pinned versions: $OCR_CRD_DIR, else ../shared/crds (laid there by CI), else the cache
# that `harness manifests fetch-crds` fills. Tests that need them are skipped, saying that command, without.
CRD_DIR = default_crd_dir()
CRD_SKIP_REASON = crd_dir_problem(CRD_DIR)
OVERLAYS = overlay_names()


def the(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of a kind and name in a render."""
    found = [o for o in objects if o.get("kind") == kind and o["metadata"].get("name") == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
