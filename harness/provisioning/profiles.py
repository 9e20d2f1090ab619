"""Profiles: which add-ons and which overlay each milestone needs, and which profile a test run needs.

A profile names an overlay of ``manifests/overlays`` and the cluster add-ons that overlay relies on.
Milestone 1 needs no mesh and no KEDA, so a run of milestone 1 alone never installs them; the profiles
nest (milestone1 < milestone2 < milestone3 < full), and a cluster provisioned for a larger one serves a
smaller one. ``scale-to-zero`` puts the predictor in Knative mode and stands apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.errors import HarnessError

# Add-ons, in the order they are installed (the platform facts' order; Knative before KServe).
ADDONS = ("metrics-server", "cert-manager", "istio", "prometheus", "keda", "knative", "kserve")


@dataclass(frozen=True)
class Profile:
    name: str
    addons: frozenset[str]
    # Capabilities the deployed profile gives the features (see harness.acceptance.targets.CAPABILITIES).
    capabilities: frozenset[str]
    # Profiles whose features this one also serves (itself included).
    serves: frozenset[str]
    # Cluster size the profile needs (requests of every component, with headroom for the load scenarios).
    cpus: int
    memory_gib: int

    @property
    def knative(self) -> bool:
        """The predictor in Knative mode, scaling to zero."""
        return "knative" in self.capabilities

    # What the overlay deploys, read by the manifest checks (each switches on the rules that prove it).

    @property
    def mesh(self) -> bool:
        """Istio: STRICT mTLS, deny by default, API keys at the gateway."""
        return "istio" in self.capabilities

    @property
    def ratelimit(self) -> bool:
        """The global rate limit per API key at the gateway."""
        return "ratelimit" in self.capabilities

    @property
    def jobs(self) -> bool:
        """The Redis stream and the workers."""
        return "jobs" in self.capabilities

    @property
    def keda(self) -> bool:
        """Workers scaled by KEDA."""
        return "keda" in self.capabilities

    def features(self) -> list[str]:
        """The overlay's features that are on, by name."""
        return [name for name in ("mesh", "ratelimit", "jobs", "keda", "knative") if getattr(self, name)]

    @classmethod
    def shown(cls, *, mesh: bool = False, ratelimit: bool = False, jobs: bool = False, keda: bool = False,
              knative: bool = False) -> Profile:  # fmt: skip
        """A profile known only by what an overlay deploys (a kustomization outside the named ones)."""
        flags = {"istio": mesh, "ratelimit": ratelimit, "jobs": jobs, "keda": keda, "knative": knative}
        capabilities = frozenset({"k8s", *(name for name, on in flags.items() if on)})
        return cls("inferred", frozenset(), capabilities, frozenset(), cpus=0, memory_gib=0)


_BASE = frozenset({"metrics-server", "cert-manager", "prometheus", "kserve"})
# "models": the layout InferenceService beside the OCR one (components/layout, in every Standard-mode overlay);
# "tables": the table InferenceService too (components/table, in the full overlay only).
_M1_CAPS = frozenset({"k8s", "hpa", "prometheus", "models"})
_M2_CAPS = _M1_CAPS | {"istio", "gateway", "ratelimit"}
_M3_CAPS = _M2_CAPS | {"keda", "jobs"}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("milestone1", _BASE, _M1_CAPS, frozenset({"milestone1"}), cpus=4, memory_gib=6),
        Profile("milestone2", _BASE | {"istio"}, _M2_CAPS, frozenset({"milestone1", "milestone2"}), 4, 7),
        Profile(
            "milestone3",
            _BASE | {"istio", "keda"},
            _M3_CAPS,
            frozenset({"milestone1", "milestone2", "milestone3"}),
            cpus=4,
            memory_gib=8,
        ),
        Profile(
            "full",
            _BASE | {"istio", "keda"},
            _M3_CAPS | {"tables"},
            frozenset({"milestone1", "milestone2", "milestone3", "full"}),
            cpus=4,
            memory_gib=8,
        ),
        # net-istio is Knative's ingress here, so Istio comes along; the overlay carries no mesh policies.
        Profile(
            "scale-to-zero",
            _BASE | {"istio", "knative"},
            frozenset({"k8s", "knative", "prometheus"}),
            frozenset({"scale-to-zero"}),
            cpus=4,
            memory_gib=7,
        ),
    )
}
NESTED = ("milestone1", "milestone2", "milestone3", "full")
# Capabilities only the local target provides: no cluster profile is chosen for them, and their scenarios are
# skipped on a cluster with a reason ("drain": each replica's drain watched from outside it, which a cluster
# shows as the capacity kept and the order of its pods' handover instead).
LOCAL_ONLY = frozenset({"drain"})
# Capabilities a target has by what it is, whatever profile it deploys: "sigkill" needs a way to signal a
# container's process (local processes; kind through its nodes' container runtime), no add-on.
TARGET_OWN = frozenset({"sigkill"})


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise HarnessError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def profile_for(milestones: Iterable[str], capabilities: Iterable[str]) -> Profile:
    """The smallest profile that serves every milestone and capability a test run selected.

    Knative's scale-to-zero replaces the Standard-mode predictor, so it is chosen only when the run
    selects nothing else that needs a Kubernetes profile; otherwise the largest nested profile needed wins
    and the Knative scenarios are skipped with a reason (see :func:`skip_reason`).
    """
    caps = set(capabilities) - LOCAL_ONLY - TARGET_OWN
    named = [m for m in milestones if m in PROFILES]
    alone = PROFILES["scale-to-zero"]
    if ("knative" in caps or "scale-to-zero" in named) and caps <= alone.capabilities and set(named) <= alone.serves:
        return alone
    for name in NESTED:
        candidate = PROFILES[name]
        if caps - {"knative"} <= candidate.capabilities and all(m in candidate.serves for m in named if m in NESTED):
            return candidate
    return PROFILES["full"]


def skip_reason(deployed: Profile, milestones: Iterable[str], capabilities: Iterable[str]) -> str | None:
    """Why a scenario cannot run on the deployed profile, or None when it can."""
    missing = sorted(set(capabilities) - deployed.capabilities)
    if missing and set(missing) <= LOCAL_ONLY:
        return f"needs {', '.join(missing)}, which only the local target provides so far (--target local)"
    if missing:
        return (
            f"needs {', '.join(missing)}; the {deployed.name} profile deployed for this run does not provide "
            f"{'it' if len(missing) == 1 else 'them'} (run this feature on its own to deploy what it needs)"
        )
    outside = sorted(m for m in milestones if m in PROFILES and m not in deployed.serves)
    if outside:
        return f"belongs to {', '.join(outside)}; this run deployed the {deployed.name} profile"
    return None
