"""The provisioning plan, checked as data: order, pins, argv lists, profiles, and the files it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import CommandFailed, HarnessError
from harness.provisioning import versions
from harness.provisioning.identity import IMAGE
from harness.provisioning.plan import (
    GATEWAY_NODE_PORT,
    Probes,
    Spec,
    Step,
    fingerprint,
    install_plan,
    knative_serving,
    teardown_plan,
)
from harness.provisioning.profiles import PROFILES, profile
from harness.provisioning.run import run_plan


def spec(name: str = "full", work: Path = Path("/tmp/plan"), **kw: object) -> Spec:
    return Spec(profile(name), work, host_port=18080, **kw)  # type: ignore[arg-type]


def plan(name: str = "full", **kw: object) -> list[Step]:
    return install_plan(spec(name, **kw), render=lambda dest: None)


def names(steps: list[Step]) -> list[str]:
    return [s.name for s in steps]


def index(steps: list[Step], name: str) -> int:
    return names(steps).index(name)


def test_install_order_follows_the_platform_facts() -> None:
    steps = plan()
    order = [
        "kind cluster", "metrics-server", "cert-manager", "istio base", "istiod", "istio ingress gateway",
        "ingress class istio", "kube-prometheus-stack", "keda", "kserve crds", "kserve controller (Standard mode)",
        "service image", "image archive", "image into the kind node", "apply the full overlay",
        "InferenceService ready", "workers' ScaledObject ready",
    ]  # fmt: skip
    positions = [index(steps, name) for name in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))


@pytest.mark.parametrize("name", list(PROFILES))
def test_crds_come_before_the_objects_that_use_them(name: str) -> None:
    steps = plan(name)
    apply = index(steps, f"apply the {name} overlay")
    # InferenceService (KServe), PodMonitor/PrometheusRule (Prometheus), cert-manager before KServe's webhook.
    for before in ("cert-manager", "kube-prometheus-stack", "kserve crds", "kserve controller (Standard mode)"):
        assert index(steps, before) < apply, before
    assert index(steps, "cert-manager") < index(steps, "kserve controller (Standard mode)")
    if "keda" in profile(name).addons:
        assert index(steps, "keda") < apply
    if "istio" in profile(name).addons:
        assert index(steps, "istio base") < index(steps, "istiod") < apply


def test_knative_comes_before_kserve_and_only_for_scale_to_zero() -> None:
    for name in ("milestone1", "milestone2", "milestone3", "full"):
        assert not [s for s in plan(name) if "knative" in s.name]
    steps = plan("scale-to-zero")
    # KServe's controller looks for the Knative Service CRD once, at start-up.
    assert index(steps, "knative serving ready") < index(steps, "kserve crds")
    assert index(steps, "knative operator") < index(steps, "knative serving with net-istio")


def test_milestone1_installs_no_mesh_and_no_keda() -> None:
    steps = names(plan("milestone1"))
    assert not [n for n in steps if "istio" in n or "keda" in n or "ScaledObject" in n], steps
    m2 = names(plan("milestone2"))
    assert "istiod" in m2 and "keda" not in m2
    assert "keda" in names(plan("milestone3"))


def test_every_command_is_an_argv_list_of_strings() -> None:
    for name in PROFILES:
        for step in plan(name):
            assert (step.argv and all(isinstance(a, str) and a for a in step.argv)) or step.action is not None, step


@pytest.mark.parametrize(
    "chart",
    [versions.METRICS_SERVER, versions.CERT_MANAGER, versions.ISTIO_BASE, versions.ISTIOD, versions.ISTIO_GATEWAY,
     versions.KUBE_PROMETHEUS_STACK, versions.KEDA, versions.KSERVE_CRD, versions.KSERVE_RESOURCES,
     versions.KNATIVE_OPERATOR],
)  # fmt: skip
def test_every_chart_is_installed_at_its_pinned_version(chart: versions.Chart) -> None:
    helm = [s.argv for n in PROFILES for s in plan(n) if s.argv[:3] == ("helm", "upgrade", "--install")]
    matching = {a for a in helm if chart.repo in a and (chart.repo.startswith("oci://") or chart.name in a)}
    assert len(matching) == 1, chart
    (argv,) = matching
    assert argv[argv.index("--version") + 1] == chart.version
    assert "--wait" in argv
    assert argv[argv.index("--kube-context") + 1] == "kind-ocr-platform"


def test_a_helm_release_records_the_fingerprint_of_its_command() -> None:
    for step in plan("full"):
        if step.argv[:3] == ("helm", "upgrade", "--install"):
            assert step.argv[-2] == "--description"
            assert step.argv[-1] == fingerprint(step.argv[:-2])
    # Another value is another fingerprint: a changed release is never skipped as "already done".
    a = next(s for s in plan("full") if s.name == "istiod").argv
    assert fingerprint(a[:-2]) != fingerprint((*a[:-2], "--set", "x=y"))


def test_kind_node_image_is_pinned_by_digest() -> None:
    (create,) = [s.argv for s in plan() if s.argv[:3] == ("kind", "create", "cluster")]
    assert create[create.index("--image") + 1] == versions.KIND_NODE_IMAGE
    assert "@sha256:" in versions.KIND_NODE_IMAGE


def test_every_tool_download_is_pinned_for_every_platform() -> None:
    for tool in ("kind", "helm", "kubectl"):
        digests = versions.TOOL_SHA256[tool]
        assert set(digests) == {"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"}, tool
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests.values()), tool


def test_the_traps_are_handled() -> None:
    steps = plan()
    flat = {s.name: " ".join(s.argv) for s in steps}
    assert "args={--kubelet-insecure-tls}" in flat["metrics-server"]
    assert "crds.enabled=true" in flat["cert-manager"]
    assert "defaultRevision=default" in flat["istio base"]
    kserve = flat["kserve controller (Standard mode)"]
    assert "kserve.controller.deploymentMode=Standard" in kserve
    # KServe's own Ingress would serve a second host outside the rate limit.
    assert "kserve.controller.gateway.disableIngressCreation=true" in kserve
    for key in ("serviceMonitorSelectorNilUsesHelmValues", "podMonitorSelectorNilUsesHelmValues"):
        assert f"prometheus.prometheusSpec.{key}=false" in flat["kube-prometheus-stack"]
    # istiod's default requests (500m / 2Gi) do not fit a laptop; the chart's keys are top-level.
    assert "resources.requests.cpu=100m" in flat["istiod"] and "autoscaleEnabled=false" in flat["istiod"]
    # The API-key authorizer as an extension provider of the mesh (istio/api 1.30 mesh/v1alpha1/config.proto
    # EnvoyExternalAuthorizationHttpProvider); the CUSTOM policy ocr-require-api-key names it.
    provider = "meshConfig.extensionProviders[0]"
    for value in (
        f"{provider}.name=ocr-api-key",
        f"{provider}.envoyExtAuthzHttp.service=ocr-authz.ocr-dev.svc.cluster.local",
        f"{provider}.envoyExtAuthzHttp.port=8080",
        f"{provider}.envoyExtAuthzHttp.timeout=1s",
        f"{provider}.envoyExtAuthzHttp.failOpen=false",
        f"{provider}.envoyExtAuthzHttp.includeRequestHeadersInCheck={{x-api-key,x-request-id}}",
        f"{provider}.envoyExtAuthzHttp.headersToUpstreamOnAllow={{x-tenant-id,x-api-key-id}}",
        f"{provider}.envoyExtAuthzHttp.headersToDownstreamOnDeny={{content-type}}",
    ):
        assert f"--set {value} " in flat["istiod"] + " ", value
    # The dashboard reads KEDA's own metrics and the SLO looks back 3 days.
    assert "prometheus.operator.podMonitor.enabled=true" in flat["keda"]
    assert "prometheus.prometheusSpec.retention=4d" in flat["kube-prometheus-stack"]
    # The release name derives the gateway's istio=ingressgateway label and service account.
    assert steps[index(steps, "istio ingress gateway")].argv[3] == "istio-ingressgateway"
    apply = steps[index(steps, "apply the full overlay")]
    assert apply.attempts > 1 and "connection refused" in apply.retry_on
    # An archive, not `kind load docker-image` (fails on Docker's containerd store with attestations).
    load = steps[index(steps, "image into the kind node")].argv
    assert load[:3] == ("kind", "load", "image-archive")
    assert "dev.local/" in IMAGE


def test_knative_serving_skips_tag_resolution_for_the_loaded_image() -> None:
    docs = list(yaml.safe_load_all(knative_serving()))
    serving = docs[-1]
    config = serving["spec"]["config"]
    registries = config["deployment"]["registries-skipping-tag-resolving"].split(",")
    assert IMAGE.split("/")[0] in registries
    assert config["features"]["kubernetes.podspec-volumes-emptydir"] == "enabled"
    assert serving["spec"]["version"] == versions.KNATIVE_SERVING


def test_written_inputs(tmp_path: Path) -> None:
    steps = install_plan(spec("full", tmp_path), render=lambda dest: None)
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


def test_an_existing_cluster_gets_no_kind_steps() -> None:
    steps = install_plan(spec("milestone2", kube_context="minikube", image_loader="minikube"), render=lambda d: None)
    assert not [s for s in steps if s.argv[:1] == ("kind",)]
    load = [s.argv for s in steps if s.name == "image into minikube"]
    assert load == [("minikube", "-p", "minikube", "image", "load", IMAGE)]
    assert all(s.argv[s.argv.index("--kube-context") + 1] == "minikube" for s in steps if s.argv[:1] == ("helm",))
    registry = install_plan(
        spec("milestone1", kube_context="gke", image="ghcr.io/me/ocr:dev", image_loader="registry"),
        render=lambda d: None,
    )
    assert ("docker", "push", "ghcr.io/me/ocr:dev") in [s.argv for s in registry]


def test_only_selects_a_group() -> None:
    platform = install_plan(spec("milestone3"), render=lambda d: None, only="platform")
    assert {s.group for s in platform} == {"setup", "platform"}
    assert "kserve controller (Standard mode)" in names(platform) and "service image" not in names(platform)
    app = install_plan(spec("milestone3"), render=lambda d: None, only="app")
    assert {s.group for s in app} == {"setup", "app"}
    with pytest.raises(ValueError, match="unknown step group"):
        install_plan(spec("milestone3"), only="everything")


def test_done_probes_make_up_skip_what_exists(tmp_path: Path) -> None:
    asked: list[tuple[str, ...]] = []

    def release_matches(context: str, namespace: str, release: str, description: str) -> bool:
        asked.append((context, namespace, release, description))
        return release != "kserve"

    probes = Probes(cluster_exists=lambda cluster: cluster == "ocr-platform", release_matches=release_matches)
    steps = install_plan(spec("milestone1", tmp_path), probes=probes, render=lambda d: None)
    by_name = {s.name: s for s in steps}
    assert by_name["kind cluster"].done is not None and by_name["kind cluster"].done()
    assert by_name["metrics-server"].done is not None and by_name["metrics-server"].done()
    assert by_name["kserve controller (Standard mode)"].done is not None
    assert not by_name["kserve controller (Standard mode)"].done()
    kserve_argv = by_name["kserve controller (Standard mode)"].argv
    assert ("kind-ocr-platform", "kserve", "kserve", kserve_argv[-1]) in asked


def test_teardown_deletes_the_cluster() -> None:
    assert [s.argv for s in teardown_plan("c1")] == [("kind", "delete", "cluster", "--name", "c1")]


def test_runner_numbers_steps_skips_done_ones_and_resumes(tmp_path: Path) -> None:
    ran: list[str] = []
    steps = [
        Step("one", action=lambda: ran.append("one")),
        Step("two", action=lambda: ran.append("two"), done=lambda: True),
        Step("three", ("true",)),
        Step("four", action=lambda: ran.append("four")),
    ]
    said: list[str] = []
    results = run_plan(steps, log_dir=tmp_path, say=said.append)
    assert ran == ["one", "four"]
    assert [r.outcome for r in results] == ["ran", "already done", "ran", "ran"]
    assert said[0].startswith("[1/4] one") and "[2/4] two: already done" in said
    assert any(line.startswith("[3/4] done in") for line in said)
    assert (tmp_path / "steps.json").exists() and "$ " in (tmp_path / "provision.log").read_text()

    ran.clear()
    resumed = run_plan(steps, log_dir=tmp_path, from_step=4, say=lambda line: None)
    assert ran == ["four"]
    assert [r.outcome for r in resumed][:3] == ["skipped (before --from-step)"] * 3
    with pytest.raises(Exception, match="from-step 9"):
        run_plan(steps, log_dir=tmp_path, from_step=9, say=lambda line: None)


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    steps = [Step("boom", ("false",)), Step("act", action=lambda: (_ for _ in ()).throw(AssertionError("ran")))]
    run_plan(steps, log_dir=tmp_path, dry_run=True, say=said.append)
    assert said == ["[1/2] boom: false", "[2/2] act: (python) act"]


def test_runner_retries_only_what_the_step_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.provisioning.run as run

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


@pytest.mark.parametrize("overlay", ["milestone1", "milestone2", "full"])
def test_deploy_render_has_real_secrets_and_never_a_placeholder(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import harness.provisioning.secrets as secrets
    from harness.errors import HarnessError
    from harness.provisioning.env import PLACEHOLDER_MARK, render_for
    from harness.provisioning.render import render

    for example in ("components/istio/authz.yaml", "components/jobs/redis-auth.env.example"):
        # The committed secrets (no API key hashes, a placeholder password) are marked, so the guard below sees them.
        assert PLACEHOLDER_MARK in (secrets.MANIFESTS_DIR / example).read_text()
    # Render in a temporary copy of manifests/: nothing is written to the repository. The render makes the
    # per-cluster secrets itself.
    copy = tmp_path / "manifests"
    shutil.copytree(secrets.MANIFESTS_DIR, copy, ignore=shutil.ignore_patterns("secrets"))
    monkeypatch.setattr(secrets, "MANIFESTS_DIR", copy)
    monkeypatch.setattr(secrets, "SECRETS_DIR", copy / "secrets")
    original = secrets.render_with_keys
    monkeypatch.setattr(secrets, "render_with_keys", lambda overlay: original(overlay, manifests_dir=copy))
    render_for(spec(overlay, tmp_path))(tmp_path / "out.yaml")
    text = (tmp_path / "out.yaml").read_text()
    assert PLACEHOLDER_MARK not in text
    if overlay != "milestone1":
        # The cluster gets the keys' hashes, never the keys.
        keys = secrets.read_api_keys(copy / "secrets" / "api-keys.env")
        assert not [value for value in keys.values() if value in text]
        hashes = [o for o in yaml.safe_load_all(text) if o["metadata"]["name"] == secrets.HASHES_SECRET]
        assert [o["stringData"]["hashes.jsonl"] for o in hashes] == [
            secrets.read_key_hashes(copy / "secrets" / secrets.HASHES_FILE)
        ]
    if overlay == "full":
        assert secrets.read_redis_password(copy / "secrets" / "redis-auth.env") in text
    # The service image is the one loaded into the cluster (dev.local: Knative resolves no tag there).
    images = {line.split("image:", 1)[1].strip() for line in text.splitlines() if "image: " in line and "ocr" in line}
    assert images == {"dev.local/ocr:dev"}, images

    if overlay == "milestone1":
        return
    # A render that kept the committed placeholders is refused.
    monkeypatch.setattr(secrets, "render_with_keys", lambda overlay: render(copy / "overlays" / overlay))
    with pytest.raises(HarnessError, match="placeholder"):
        render_for(spec(overlay, tmp_path))(tmp_path / "refused.yaml")


@pytest.mark.parametrize(
    ("installed", "profile", "refused"),
    [
        ((), "scale-to-zero", False),  # a new cluster takes either mode
        ((), "milestone2", False),
        (("kserve",), "milestone3", False),
        (("kserve", "knative-operator"), "scale-to-zero", False),
        (("kserve",), "scale-to-zero", True),  # Knative would come after KServe, and the mode cannot change
        (("kserve", "knative-operator"), "milestone1", True),
        (("knative-operator",), "milestone1", False),  # no KServe yet: it is installed in the profile's mode
    ],
)
def test_a_cluster_of_the_other_serving_mode_is_refused_before_anything_changes(
    installed: tuple[str, ...], profile: str, refused: bool
) -> None:
    asked: list[tuple[str, str, str]] = []

    def release_exists(context: str, namespace: str, release: str) -> bool:
        asked.append((context, namespace, release))
        return release in installed

    steps = install_plan(spec(profile), probes=Probes(release_exists=release_exists), render=lambda d: None)
    guard = steps[1]
    assert guard.name == "the cluster's KServe serving mode fits the profile" and guard.group == "setup"
    assert guard.action is not None
    if refused:
        with pytest.raises(HarnessError, match=f"the {profile} profile needs .* mode.*harness down --cluster"):
            guard.action()
    else:
        guard.action()
    assert ("kind-ocr-platform", "kserve", "kserve") in asked
    # It stays in the plan whatever --only selects.
    assert "the cluster's KServe serving mode fits the profile" in names(
        install_plan(spec(profile), render=lambda d: None, only="app")
    )


def test_the_live_helm_probes_read_helm_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.provisioning.run import helm_release_exists, helm_release_matches

    # A stand-in helm in the harness's tool cache: "kserve" is deployed by one command, nothing else exists.
    helm = tmp_path / "helm"
    helm.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = kserve ]; then echo \'{"info": {"status": "deployed", "description": "cmd-1"}}\'; exit 0; fi\n'
        'echo "Error: release: not found" >&2; exit 1\n'
    )
    helm.chmod(0o755)
    monkeypatch.setenv("HARNESS_TOOLS_DIR", str(tmp_path))
    assert helm_release_exists("ctx", "kserve", "kserve")
    assert not helm_release_exists("ctx", "knative-operator", "knative-operator")
    assert helm_release_matches("ctx", "kserve", "kserve", "cmd-1")
    assert not helm_release_matches("ctx", "kserve", "kserve", "cmd-2")
    assert not helm_release_matches("ctx", "keda", "keda", "cmd-1")
