"""What each overlay promises: the profile of platform features that its rendered objects must prove."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.manifests.objects import Obj, dig


@dataclass(frozen=True)
class Profile:
    """The platform features an overlay deploys; each one switches on the rules that prove it."""

    mesh: bool = False  # Istio: STRICT mTLS, deny by default, API keys at the gateway
    ratelimit: bool = False  # global rate limit per API key at the gateway
    jobs: bool = False  # Redis stream and workers
    keda: bool = False  # workers scaled by KEDA
    knative: bool = False  # predictor in Knative mode, scale to zero

    def features(self) -> list[str]:
        return [name for name, on in vars(self).items() if on]


_STANDARD = Profile(mesh=True, ratelimit=True, jobs=True, keda=True)

OVERLAYS: dict[str, Profile] = {
    "milestone1": Profile(),
    "milestone2": Profile(mesh=True, ratelimit=True),
    "milestone3": _STANDARD,
    "full": _STANDARD,
    "scale-to-zero": Profile(knative=True),
}


def infer_profile(objects: Sequence[Obj]) -> Profile:
    """The profile an unnamed render shows by its content (for kustomizations outside the table)."""
    groups = {str(obj.get("apiVersion", "")).split("/")[0] for obj in objects}
    kinds = {obj.get("kind") for obj in objects}
    knative = any(
        dig(obj, "metadata", "annotations", "serving.kserve.io/deploymentMode") == "Knative"
        for obj in objects
        if obj.get("kind") == "InferenceService"
    )
    return Profile(
        mesh="security.istio.io" in groups,
        ratelimit="EnvoyFilter" in kinds,
        jobs=any(obj.get("kind") == "Deployment" and dig(obj, "metadata", "name") == "ocr-worker" for obj in objects),
        keda="ScaledObject" in kinds,
        knative=knative,
    )


def profile_for(name: str, objects: Sequence[Obj]) -> Profile:
    """The declared profile of a known overlay, else the one its objects show."""
    return OVERLAYS.get(name) or infer_profile(objects)
