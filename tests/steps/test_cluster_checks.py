"""The cluster tier's Thens judged offline on what they would be given there.

The mesh checks get what :mod:`harness.provisioning.kube.probe` really sees from loopback peers that behave as the
cluster cases do (a sidecar closing a plaintext connection, nothing listening, a name that does not resolve, the
sidecar's RBAC denial, the caller's own sidecar failing to connect); the rollout's order check gets pod
timelines; the idle workers' check gets looks at the workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.acceptance.evidence import RunEvidence
from harness.acceptance.rollout import PodTimeline, handover_order
from harness.provisioning.kube.probe import probe
from steps import cluster, rollout, scaling
from tests.harness.test_probe import answer_403, close_after_reading, closed_port, peer
from tests.harness.test_rollout import _named


@pytest.fixture
def evidence(tmp_path: Path) -> Any:
    return RunEvidence(root=tmp_path, target="cluster").scenario("Mesh", "A check")


def _seen(handle: Any) -> dict[str, Any]:
    with peer(handle) as port:
        return probe(f"http://127.0.0.1:{port}/readyz", timeout=1)


def test_a_plaintext_call_closed_by_the_sidecar_passes_beside_its_control(evidence: Any) -> None:
    control, outside = _seen(answer_403), _seen(close_after_reading)
    assert cluster._policy_denial(control)
    outside["address"] = control["address"]  # the same Service address, as both pods resolve it
    cluster.closed_by_mtls(outside, control, evidence)


@pytest.mark.parametrize(
    "outside",
    [
        lambda: probe(f"http://127.0.0.1:{closed_port()}/readyz", timeout=1),  # no endpoint: the predictor is down
        lambda: probe("http://ocr-predictor.ocr-dev.invalid/readyz", timeout=1),  # DNS
        lambda: _seen(answer_403),  # a plaintext answer: mTLS is not STRICT
    ],
    ids=["connect-refused", "dns-failure", "http-answer"],
)
def test_any_other_failure_or_an_answer_fails_the_mtls_check(evidence: Any, outside: Any) -> None:
    control = _seen(answer_403)
    seen = outside()
    seen.setdefault("address", control["address"])
    with pytest.raises(AssertionError):
        cluster.closed_by_mtls(seen, control, evidence)


def test_the_control_must_be_the_predictors_sidecar_denying_not_the_callers_sidecar_failing() -> None:
    caller_sidecar = {"outcome": "http", "status": 503, "body": "upstream connect error or disconnect/reset"}
    assert not cluster._policy_denial(caller_sidecar)
    assert not cluster._policy_denial({"outcome": "http", "status": 403, "body": "forbidden by the app"})
    assert cluster._policy_denial({"outcome": "http", "status": 403, "body": "RBAC: access denied"})


def _run(looks: list[list[dict[str, Any]]]) -> rollout.RolloutRun:
    timeline = PodTimeline(started=0.0)
    for i, pods in enumerate(looks):
        timeline.observe(pods, at=i * 0.25)
    report = {"handover": handover_order(timeline, "v2")}
    return rollout.RolloutRun("v2", report, [], 0.0, 1.0, {})


def test_the_handover_check_fails_an_old_pod_that_went_first() -> None:
    in_order = [
        [_named("a", "v1", ready=True), _named("b", "v2")],
        [_named("a", "v1", ready=True), _named("b", "v2", ready=True)],
        [_named("a", "v1", terminating=True), _named("b", "v2", ready=True)],
    ]
    rollout.handed_over_in_order(_run(in_order))
    too_early = [
        [_named("a", "v1", ready=True), _named("b", "v2")],
        [_named("a", "v1", terminating=True), _named("b", "v2")],
        [_named("b", "v2", ready=True)],
    ]
    with pytest.raises(AssertionError, match="went before a new one was ready"):
        rollout.handed_over_in_order(_run(too_early))
    with pytest.raises(AssertionError, match="no old pod"):
        rollout.handed_over_in_order(_run([[_named("b", "v2", ready=True)]] * 3))


def test_idle_workers_must_be_at_zero_in_every_look() -> None:
    zero = {"ready": 0, "desired": 0, "current": 0}
    scaling.stayed_at([{"t": i, "value": zero} for i in range(20)], "0")
    starting = {"ready": 0, "desired": 1, "current": 1}  # a pod asked for, not ready yet: not at zero
    looks = [{"t": i, "value": zero} for i in range(19)] + [{"t": 19, "value": starting}]
    with pytest.raises(AssertionError, match="1 of 20 looks"):
        scaling.stayed_at(looks, "0")
    with pytest.raises(AssertionError, match="1 of 20 looks"):
        scaling.stayed_at([{"t": i, "value": zero} for i in range(19)] + [{"t": 19, "value": {"error": "x"}}], "0")
