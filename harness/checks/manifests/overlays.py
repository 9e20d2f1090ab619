"""What each overlay promises: the profile of platform features that its rendered objects must prove."""

from __future__ import annotations

from collections.abc import Sequence

from harness.provisioning.objects import Obj, dig
from harness.provisioning.profiles import PROFILES, Profile

# The overlays are the platform's profiles (``harness.provisioning.profiles``): one table, read by the
# provisioning plan, the targets, the pytest plugin and these checks.
OVERLAYS: dict[str, Profile] = dict(PROFILES)


def infer_profile(objects: Sequence[Obj]) -> Profile:
    """The profile an unnamed render shows by its content (for kustomizations outside the table)."""
    groups = {str(obj.get("apiVersion", "")).split("/")[0] for obj in objects}
    kinds = {obj.get("kind") for obj in objects}
    knative = any(
        dig(obj, "metadata", "annotations", "serving.kserve.io/deploymentMode") == "Knative"
        for obj in objects
        if obj.get("kind") == "InferenceService"
    )
    return Profile.shown(
        mesh="security.istio.io" in groups,
        ratelimit="EnvoyFilter" in kinds,
        jobs=any(obj.get("kind") == "Deployment" and dig(obj, "metadata", "name") == "ocr-worker" for obj in objects),
        keda="ScaledObject" in kinds,
        knative=knative,
    )


def profile_for(name: str, objects: Sequence[Obj]) -> Profile:
    """The declared profile of a known overlay, else the one its objects show."""
    return OVERLAYS.get(name) or infer_profile(objects)
