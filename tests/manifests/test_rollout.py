"""The model version is set in one place, and the rollout rules hold where they apply."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.checks.manifests import policies
from harness.checks.manifests.overlays import OVERLAYS
from harness.checks.manifests.policies.rollout import MIN_PRESTOP_S, prestop_seconds
from harness.provisioning.objects import Container, Obj
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]
ROLLOUT_RULES = [r.name for r in policies.RULES if r.name.startswith("rollout-")]
VERSION_LABEL = "app.kubernetes.io/version"


def _scope(_api_version: str, _kind: str) -> bool:
    return True


def test_there_is_a_rule_for_each_step_of_a_graceful_rollout() -> None:
    assert sorted(ROLLOUT_RULES) == [
        "rollout-grace-period",
        "rollout-max-unavailable",
        "rollout-prestop",
        "rollout-readiness",
    ]


@pytest.mark.parametrize("overlay", sorted(name for name, profile in OVERLAYS.items() if not profile.knative))
def test_every_standard_overlay_passes_the_rollout_rules(overlay: str, rendered: Rendered) -> None:
    objects = rendered(overlay)
    context = policies.Context(objects, OVERLAYS[overlay], _scope)
    assert [str(f) for f in policies.check(context, only=ROLLOUT_RULES)] == []


def test_knative_mode_leaves_rollouts_to_knative(rendered: Rendered) -> None:
    predictor = the(rendered("scale-to-zero"), "InferenceService", "ocr")["spec"]["predictor"]
    # KServe's webhook refuses deploymentStrategy in Knative mode; Knative refuses lifecycle hooks.
    assert "deploymentStrategy" not in predictor
    assert all("lifecycle" not in c for c in predictor["containers"])
    assert not any(r.applies(OVERLAYS["scale-to-zero"]) for r in policies.RULES if r.name in ROLLOUT_RULES)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_model_version_comes_from_one_label(overlay: str, rendered: Rendered) -> None:
    isvc = the(rendered(overlay), "InferenceService", "ocr")
    version = isvc["metadata"]["labels"][VERSION_LABEL]
    predictor = isvc["spec"]["predictor"]
    env = {e["name"]: e.get("value") for e in predictor["containers"][0]["env"]}
    assert version and version != "set-by-the-kustomization"
    assert predictor["labels"][VERSION_LABEL] == version
    assert env["OCR_MODEL_VERSION"] == version


def test_the_manifest_pause_covers_propagation(rendered: Rendered) -> None:
    predictor = the(rendered("milestone1"), "InferenceService", "ocr")["spec"]["predictor"]
    container = Container(predictor["containers"][0], predictor, ("spec", "predictor", "containers", 0), False)
    assert (prestop_seconds(container) or 0) >= MIN_PRESTOP_S


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ({"sleep": {"seconds": 12}}, 12.0),
        ({"exec": {"command": ["/bin/sleep", "20"]}}, 20.0),
        ({"exec": {"command": ["sh", "-c", "echo bye"]}}, None),
        ({"httpGet": {"path": "/drain", "port": 8080}}, None),
        (None, None),
    ],
)
def test_prestop_pause_is_read_from_sleep_or_exec(hook: Obj | None, expected: float | None) -> None:
    spec: Obj = {"name": "kserve-container", **({"lifecycle": {"preStop": hook}} if hook else {})}
    assert prestop_seconds(Container(spec, {}, ("spec",), False)) == expected
