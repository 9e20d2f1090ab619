"""The kind provisioning plan, checked as data: order, pins, argv lists, and the files it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import versions
from harness.errors import CommandFailed
from harness.kind.plan import GATEWAY_NODE_PORT, PROFILES, Step, install_plan, teardown_plan
from harness.kind.run import run_plan


def plan(profile: str = "full", tmp: Path = Path("/tmp/plan")) -> list[Step]:
    return install_plan(profile, tmp, host_port=18080, render=lambda dest: None)


def index(steps: list[Step], name: str) -> int:
    return next(i for i, s in enumerate(steps) if s.name == name)


def test_install_order_follows_the_platform_facts() -> None:
    steps = plan()
    order = [
        "kind cluster", "metrics-server", "cert-manager", "istio base", "istiod", "istio ingress gateway",
        "ingress class istio", "kube-prometheus-stack", "keda", "kserve crds", "kserve controller (Standard mode)",
        "service image", "image into the kind node", "apply the full overlay", "InferenceService ready",
    ]  # fmt: skip
    positions = [index(steps, name) for name in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))


def test_every_command_is_an_argv_list_of_strings() -> None:
    for profile in PROFILES:
        for step in plan(profile):
            assert (step.argv and all(isinstance(a, str) and a for a in step.argv)) or step.action is not None, step


@pytest.mark.parametrize(
    "chart",
    [versions.METRICS_SERVER, versions.CERT_MANAGER, versions.ISTIO_BASE, versions.ISTIOD, versions.ISTIO_GATEWAY,
     versions.KUBE_PROMETHEUS_STACK, versions.KEDA, versions.KSERVE_CRD, versions.KSERVE_RESOURCES],
)  # fmt: skip
def test_every_chart_is_installed_at_its_pinned_version(chart: versions.Chart) -> None:
    helm = [s.argv for s in plan() if s.argv[:3] == ("helm", "upgrade", "--install")]
    matching = [a for a in helm if chart.repo in a and (chart.repo.startswith("oci://") or chart.name in a)]
    assert len(matching) == 1, chart
    argv = matching[0]
    assert argv[argv.index("--version") + 1] == chart.version
    assert "--wait" in argv


def test_kind_node_image_is_pinned_by_digest() -> None:
    (create,) = [s.argv for s in plan() if s.argv[:3] == ("kind", "create", "cluster")]
    assert create[create.index("--image") + 1] == versions.KIND_NODE_IMAGE
    assert "@sha256:" in versions.KIND_NODE_IMAGE


def test_the_traps_are_handled() -> None:
    steps = plan()
    flat = {s.name: " ".join(s.argv) for s in steps}
    assert "args={--kubelet-insecure-tls}" in flat["metrics-server"]
    assert "crds.enabled=true" in flat["cert-manager"]
    assert "defaultRevision=default" in flat["istio base"]
    assert "kserve.controller.deploymentMode=Standard" in flat["kserve controller (Standard mode)"]
    for key in ("serviceMonitorSelectorNilUsesHelmValues", "podMonitorSelectorNilUsesHelmValues"):
        assert f"prometheus.prometheusSpec.{key}=false" in flat["kube-prometheus-stack"]
    # The release name derives the gateway's istio=ingressgateway label and service account.
    assert steps[index(steps, "istio ingress gateway")].argv[3] == "istio-ingressgateway"
    apply = steps[index(steps, "apply the full overlay")]
    assert apply.attempts > 1 and "connection refused" in apply.retry_on


def test_written_inputs(tmp_path: Path) -> None:
    steps = install_plan("full", tmp_path, host_port=18080, render=lambda dest: None)
    steps[0].action()  # type: ignore[misc]
    kind = yaml.safe_load((tmp_path / "kind-config.yaml").read_text())
    (mapping,) = kind["nodes"][0]["extraPortMappings"]
    assert mapping == {
        "containerPort": GATEWAY_NODE_PORT,
        "hostPort": 18080,
        "listenAddress": "127.0.0.1",
        "protocol": "TCP",
    }
    values = yaml.safe_load((tmp_path / "gateway-values.yaml").read_text())
    assert values["service"]["type"] == "NodePort"
    http = next(p for p in values["service"]["ports"] if p["port"] == 80)
    assert http["nodePort"] == GATEWAY_NODE_PORT
    assert (
        yaml.safe_load((tmp_path / "ingressclass.yaml").read_text())["spec"]["controller"]
        == "istio.io/ingress-controller"
    )


def test_knative_only_for_scale_to_zero() -> None:
    assert not [s for s in plan("full") if "knative" in s.name]
    names = [s.name for s in plan("scale-to-zero")]
    assert "knative operator" in names and "knative serving ready" in names
    assert names.index("knative serving ready") < names.index("apply the scale-to-zero overlay")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        plan("milestone9")


def test_teardown_exports_logs_before_deleting(tmp_path: Path) -> None:
    steps = teardown_plan(logs_dir=tmp_path)
    assert [s.argv[:2] for s in steps] == [("kind", "export"), ("kind", "delete")]


def test_runner_retries_only_what_the_step_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.kind.run as run

    monkeypatch.setattr(run, "RETRY_WAIT_S", 0)
    counter = tmp_path / "count"
    script = tmp_path / "flaky.sh"
    script.write_text(
        f"#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}\n"
        '[ "$n" -ge 3 ] && exit 0\necho "$1" >&2; exit 1\n'
    )
    script.chmod(0o755)
    flaky = Step(
        "flaky webhook", (str(script), "dial tcp: connection refused"), retry_on=("connection refused",), attempts=5
    )
    run_plan([flaky], log_dir=tmp_path, say=lambda line: None)
    assert counter.read_text().strip() == "3"

    counter.unlink()
    wrong = Step(
        "bad object", (str(script), "spec.predictor: unknown field"), retry_on=("connection refused",), attempts=5
    )
    with pytest.raises(CommandFailed, match="unknown field"):
        run_plan([wrong], log_dir=tmp_path, say=lambda line: None)
    assert counter.read_text().strip() == "1"  # not retried: the object is wrong, waiting will not help


def test_deploy_render_has_real_keys_and_never_a_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import harness.manifests.secrets as secrets
    from harness.errors import HarnessError
    from harness.kind.run import PLACEHOLDER_KEY_MARK, write_rendered
    from harness.manifests.render import render

    example = (secrets.MANIFESTS_DIR / "components/istio/api-keys.env.example").read_text()
    assert PLACEHOLDER_KEY_MARK in example  # the committed keys are marked, so the guard below can see them
    # Render with fresh keys, in a temporary copy of manifests/: nothing is written to the repository.
    copy = tmp_path / "manifests"
    shutil.copytree(secrets.MANIFESTS_DIR, copy, ignore=shutil.ignore_patterns("secrets"))
    monkeypatch.setattr(secrets, "MANIFESTS_DIR", copy)
    monkeypatch.setattr(secrets, "SECRETS_DIR", copy / "secrets")
    secrets.generate_api_keys(copy / "secrets")
    original = secrets.render_with_keys
    monkeypatch.setattr(secrets, "render_with_keys", lambda overlay: original(overlay, manifests_dir=copy))
    write_rendered("milestone2")(tmp_path / "out.yaml")
    text = (tmp_path / "out.yaml").read_text()
    assert PLACEHOLDER_KEY_MARK not in text
    keys = secrets.read_api_keys(copy / "secrets" / "api-keys.env")
    assert all(value in text for value in keys.values())

    # A render that kept the committed placeholders is refused.
    monkeypatch.setattr(secrets, "render_with_keys", lambda overlay: render(copy / "overlays" / overlay))

    with pytest.raises(HarnessError, match="placeholder"):
        write_rendered("milestone2")(tmp_path / "refused.yaml")
