"""Steps about the cluster itself: nodes, namespaces, the metrics API, the InferenceService, the mesh."""

from __future__ import annotations

from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.targets import Cluster, Target, need
from steps.common import eventually


@when("the cluster is asked for its nodes, namespaces and node metrics")
def cluster_asked(target: Target, evidence: ScenarioEvidence) -> None:
    # The first look; the Thens look again until their deadlines (a cluster just made may need a minute).
    evidence.record("first_look", need(target, Cluster).cluster_facts())


@then(parsers.parse("every node is Ready within {seconds:d} seconds"))
def nodes_ready(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    seen = eventually(
        evidence, "every node Ready", lambda: need(target, Cluster).cluster_facts()["nodes"],
        lambda nodes: bool(nodes) and all(n["ready"] for n in nodes), seconds=seconds, interval=5,
    )  # fmt: skip
    evidence.record("nodes", seen)


@then(parsers.parse("the namespaces {names} exist"))
def namespaces_exist(target: Target, evidence: ScenarioEvidence, names: str) -> None:
    wanted = [n.strip().strip('"') for n in names.replace(" and ", ", ").split(",") if n.strip()]
    have = set(need(target, Cluster).cluster_facts()["namespaces"])
    evidence.record("namespaces", {"wanted": wanted, "missing": sorted(set(wanted) - have)})
    assert set(wanted) <= have, sorted(set(wanted) - have)


@then(parsers.parse("the metrics API reports the CPU and memory of every node within {seconds:d} seconds"))
def node_metrics(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    def usage() -> dict[str, Any]:
        found = need(target, Cluster).cluster_facts()
        return {
            "nodes": [n["name"] for n in found["nodes"]],
            "usage": found.get("node_usage", found.get("node_usage_error")),
        }

    seen = eventually(
        evidence, "node metrics for every node", usage,
        lambda u: isinstance(u["usage"], list)
        and {m["name"] for m in u["usage"] if m["cpu"] and m["memory"]} >= set(u["nodes"]),
        seconds=seconds, interval=5,
    )  # fmt: skip
    evidence.record("node_usage", seen["usage"])


@given(parsers.parse("the InferenceService is Ready within {seconds:d} seconds"))
def isvc_ready(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    seen = eventually(
        evidence, "InferenceService Ready", need(target, Cluster).inference_service, lambda s: s["ready"],
        seconds=seconds, interval=5,
    )  # fmt: skip
    evidence.record("inferenceservice", seen)
    assert seen["url"], seen


@then("the answer names the model and its version")
def names_model(ctx: dict, evidence: ScenarioEvidence) -> None:
    response: httpx.Response = ctx["response"]
    model = response.json().get("model") or {}
    evidence.record("model", model)
    # The version is the deployment's label (OCR_MODEL_VERSION, e.g. "v1") where one is set, else the runtime's
    # version and a digest prefix; either way the digest names the model files.
    assert model.get("name") and model.get("version"), model
    digest = str(model.get("digest", ""))
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest), f"digest: SHA-256 of the files: {model}"


def _pod_call(target: Target, evidence: ScenarioEvidence, in_mesh: bool, account: str) -> dict[str, Any]:
    result = need(target, Cluster).call_from_pod(in_mesh=in_mesh, service_account=account)
    evidence.record(f"pod_call_{'mesh' if in_mesh else 'outside'}", {"service_account": account, "result": result})
    return result


def _policy_denial(call: dict[str, Any]) -> bool:
    """The predictor's own sidecar refused the caller: RBAC's 403, not the caller's sidecar failing to connect
    (its 503 "upstream connect error" or "no healthy upstream")."""
    return call.get("outcome") == "http" and call.get("status") == 403 and "RBAC" in str(call.get("body", ""))


@given("a pod in the mesh gets an answer from the predictor's sidecar", target_fixture="mesh_control")
def mesh_control(target: Target, evidence: ScenarioEvidence) -> dict[str, Any]:
    # The positive control: the same name, from inside the mesh, reaches the predictor's sidecar over mutual TLS
    # (its policy then denies the probe's identity). So the name resolves, the predictor has endpoints and its
    # sidecar is up; a plaintext failure afterwards is the sidecar's refusal, nothing else.
    control = _pod_call(target, evidence, True, "ocr-intruder")
    assert _policy_denial(control), f"from inside the mesh the predictor's sidecar did not answer: {control}"
    return control


@when(
    parsers.re(
        r"^a pod (?P<where>outside the mesh|in the mesh with the service account \"(?P<account>[a-z0-9-]+)\") "
        r"calls the predictor directly$"
    ),
    target_fixture="pod_call",
)
def pod_calls(target: Target, evidence: ScenarioEvidence, where: str, account: str | None) -> dict[str, Any]:
    return _pod_call(target, evidence, where.startswith("in the mesh"), account or "ocr-outsider")


@then("the predictor's sidecar accepts the connection and closes it before any HTTP answer")
def closed_by_mtls(pod_call: dict[str, Any], mesh_control: dict[str, Any], evidence: ScenarioEvidence) -> None:
    evidence.record("plaintext_refused", {"outside": pod_call, "control": mesh_control})
    # STRICT mTLS: the sidecar accepts TCP, finds no TLS in the first bytes and closes the connection. A name that
    # does not resolve, a refused or unanswered SYN, or a silent peer are other failures and fail this check.
    assert pod_call.get("outcome") == "closed_without_answer", pod_call
    assert pod_call.get("address", [None])[0] == mesh_control.get("address", [None])[0], (
        f"the outside pod reached {pod_call.get('address')}, the control {mesh_control.get('address')}"
    )


@then(parsers.parse("the predictor's sidecar answers {status:d} to that pod"))
def pod_answered(pod_call: dict[str, Any], evidence: ScenarioEvidence, status: int) -> None:
    evidence.record("pod_answer", pod_call)
    assert pod_call.get("outcome") == "http" and pod_call.get("status") == status, pod_call
    if status == 403:
        assert _policy_denial(pod_call), f"a 403 that is not the sidecar's policy denial: {pod_call}"
