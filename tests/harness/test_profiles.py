"""Which platform profile a test run needs, and why a scenario is skipped on the one deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.acceptance.targets import TAGS, ClusterTarget, KindTarget, LocalTarget, TargetOptions
from harness.acceptance.targets import skip_reason as target_skip_reason
from harness.errors import HarnessError
from harness.provisioning.profiles import PROFILES, profile, profile_for, skip_reason


@pytest.mark.parametrize(
    ("milestones", "capabilities", "expected"),
    [
        ({"milestone1"}, {"k8s", "hpa", "prometheus"}, "milestone1"),
        ({"milestone1"}, {"prometheus"}, "milestone1"),
        ({"milestone2"}, {"gateway", "ratelimit"}, "milestone2"),
        ({"milestone1", "milestone2"}, {"k8s", "istio"}, "milestone2"),
        ({"milestone3"}, {"jobs"}, "milestone3"),
        ({"milestone3"}, {"k8s", "keda", "jobs"}, "milestone3"),
        ({"optional"}, {"k8s", "knative"}, "scale-to-zero"),
        # Knative with anything else: the Standard-mode profile wins, the Knative scenarios are skipped.
        ({"milestone1", "optional"}, {"k8s", "hpa", "knative"}, "milestone1"),
        ({"milestone1", "milestone2", "milestone3", "optional"}, set(TAGS) - {"tables"}, "milestone3"),
        # The table model is in the full overlay only: a run that selects its scenarios deploys that.
        ({"milestone1"}, {"models"}, "milestone1"),
        (set(), {"models", "tables"}, "full"),
        (set(), set(), "milestone1"),
    ],
)
def test_the_smallest_profile_that_serves_the_selection(
    milestones: set[str], capabilities: set[str], expected: str
) -> None:
    assert profile_for(milestones, capabilities).name == expected


def test_profiles_nest_and_milestone1_has_no_mesh() -> None:
    assert "istio" not in profile("milestone1").addons and "keda" not in profile("milestone1").addons
    assert profile("milestone1").capabilities < profile("milestone2").capabilities < profile("milestone3").capabilities
    assert profile("milestone3").serves >= {"milestone1", "milestone2", "milestone3"}
    assert "knative" in profile("scale-to-zero").addons
    assert all(p.cpus <= 4 and p.memory_gib <= 8 for p in PROFILES.values())  # a 4-core, 8 GB laptop
    with pytest.raises(HarnessError, match="unknown profile"):
        profile("milestone9")


def test_skip_reasons_name_what_is_missing() -> None:
    m1 = profile("milestone1")
    assert skip_reason(m1, {"milestone1"}, {"k8s", "hpa"}) is None
    reason = skip_reason(m1, {"milestone2"}, {"istio", "ratelimit"})
    assert reason is not None and "istio, ratelimit" in reason and "milestone1 profile" in reason
    assert skip_reason(profile("milestone3"), {"optional"}, {"knative"}) is not None
    assert "belongs to milestone2" in str(skip_reason(m1, {"milestone2"}, {"prometheus"}))


def test_targets_skip_by_their_capabilities() -> None:
    local = TargetOptions(artifacts=__import__("pathlib").Path("/tmp"))
    assert target_skip_reason(LocalTarget, local, {"istio"}, set()) == "needs istio; target local does not provide it"
    assert target_skip_reason(LocalTarget, local, {"jobs", "prometheus"}, {"milestone3"}) is None
    reason = target_skip_reason(LocalTarget, local, {"keda", "k8s", "jobs"}, set())
    assert reason == "needs k8s, keda; target local does not provide them"
    m3 = TargetOptions(artifacts=local.artifacts, profile="milestone3")
    assert target_skip_reason(KindTarget, m3, {"istio", "keda", "hpa"}, {"milestone3"}) is None
    assert target_skip_reason(ClusterTarget, m3, {"knative"}, {"optional"}) is not None


def test_a_minikube_context_is_known_by_its_kubeconfig_extension() -> None:
    from harness.provisioning.actions import context_provider

    kubeconfig = {
        "contexts": [
            {"name": "kind-ocr", "context": {"cluster": "kind-ocr", "user": "kind-ocr"}},
            {
                "name": "minikube",
                "context": {
                    "cluster": "minikube",
                    "user": "minikube",
                    "extensions": [
                        {
                            "name": "context_info",
                            "extension": {"provider": "minikube.sigs.k8s.io", "version": "v1.37.0"},
                        }
                    ],
                },
            },
        ]
    }
    assert context_provider(kubeconfig, "minikube") == "minikube.sigs.k8s.io"
    assert context_provider(kubeconfig, "kind-ocr") is None
    assert context_provider(kubeconfig, "absent") is None


def test_local_only_capabilities_choose_no_cluster_profile_and_say_why_they_skip() -> None:
    """A replica's drain watched from outside it is the local target's; a cluster shows the handover instead."""
    assert profile_for({"milestone2"}, {"drain", "gateway"}).name == "milestone2"
    reason = skip_reason(profile("full"), {"milestone2"}, {"drain"})
    assert reason is not None and "only the local target" in reason
    assert "drain" in LocalTarget.provides(TargetOptions(artifacts=Path("a")))


def test_every_standard_mode_profile_serves_both_models_and_scale_to_zero_does_not() -> None:
    """models.feature runs on a cluster too: the layout InferenceService is in every Standard-mode overlay."""
    for name in ("milestone1", "milestone2", "milestone3", "full"):
        assert "models" in profile(name).capabilities, name
        assert skip_reason(profile(name), {"milestone1"}, {"models"}) is None, name
    assert profile_for({"milestone1"}, {"models"}).name == "milestone1"
    assert "models" not in profile("scale-to-zero").capabilities


def test_a_real_sigkill_runs_locally_and_on_kind_and_is_skipped_with_its_reason_on_another_cluster() -> None:
    options = TargetOptions(artifacts=Path("artifacts"), profile="milestone3")
    needed, milestones = {"jobs", "sigkill"}, {"milestone3"}
    assert target_skip_reason(LocalTarget, options, needed, milestones) is None
    assert target_skip_reason(KindTarget, options, needed, milestones) is None
    reason = target_skip_reason(ClusterTarget, options, needed, milestones)
    assert reason is not None and "cannot signal a container's process" in reason
    # No add-on gives it, so it never makes a run choose a larger profile.
    assert profile_for({"milestone3"}, needed).name == "milestone3"
    # The pod deleted with no grace period is the cluster's own scenario, not skipped there.
    assert target_skip_reason(ClusterTarget, options, {"jobs", "k8s"}, milestones) is None
    assert target_skip_reason(KindTarget, TargetOptions(artifacts=Path("a"), profile="milestone1"), needed, milestones)
