"""Steps about the cluster itself: nodes, namespaces, the metrics API, the InferenceService, the mesh."""

from __future__ import annotations

from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness.evidence import ScenarioEvidence
from harness.targets import Target
from steps.common import eventually


@then(parsers.parse("every node is Ready within {seconds:d} seconds"))
def nodes_ready(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    seen = eventually(
        evidence, "every node Ready", lambda: target.cluster_facts()["nodes"],
        lambda nodes: bool(nodes) and all(n["ready"] for n in nodes), seconds=seconds, interval=5,
    )  # fmt: skip
    evidence.record("nodes", seen)


@then(parsers.parse("the namespaces {names} exist"))
def namespaces_exist(target: Target, evidence: ScenarioEvidence, names: str) -> None:
    wanted = [n.strip().strip('"') for n in names.replace(" and ", ", ").split(",") if n.strip()]
    have = set(target.cluster_facts()["namespaces"])
    evidence.record("namespaces", {"wanted": wanted, "missing": sorted(set(wanted) - have)})
    assert set(wanted) <= have, sorted(set(wanted) - have)


@then(parsers.parse("the metrics API reports the CPU and memory of every node within {seconds:d} seconds"))
def node_metrics(target: Target, evidence: ScenarioEvidence, seconds: int) -> None:
    def usage() -> dict[str, Any]:
        found = target.cluster_facts()
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
        evidence, "InferenceService Ready", target.inference_service, lambda s: s["ready"],
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


@when(
    parsers.re(
        r"^a pod (?P<where>outside the mesh|in the mesh with the service account \"(?P<account>[a-z0-9-]+)\") "
        r"calls the predictor directly$"
    ),
    target_fixture="pod_call",
)
def pod_calls(target: Target, evidence: ScenarioEvidence, where: str, account: str | None) -> dict[str, Any]:
    in_mesh = where.startswith("in the mesh")
    result = target.call_from_pod(in_mesh=in_mesh, service_account=account or "ocr-outsider")
    evidence.record("pod_call", {"in_mesh": in_mesh, "service_account": account, "result": result})
    return result


@then("the connection is refused before any HTTP answer")
def connection_refused(pod_call: dict[str, Any], evidence: ScenarioEvidence) -> None:
    evidence.record("plaintext_refused", pod_call)
    # STRICT mTLS resets a plaintext connection: no HTTP status at all, never a 200.
    assert "status" not in pod_call and pod_call.get("error"), pod_call


@then(parsers.parse("the predictor answers {status:d} to that pod"))
def pod_answered(pod_call: dict[str, Any], evidence: ScenarioEvidence, status: int) -> None:
    evidence.record("pod_answer", pod_call)
    assert pod_call.get("status") == status, pod_call
