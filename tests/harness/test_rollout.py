"""``harness rollout``: the guarded patch it computes, when it calls a rollout done, and its deadline."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.acceptance import rollout
from harness.checks.manifests.schemas import SchemaCatalog
from harness.errors import HarnessError, WaitTimeout
from harness.provisioning.render import render

CRD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "crds"
Obj = dict[str, Any]


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 add/replace/test, as the API server applies a JSON patch (all or nothing)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "test":
            actual = node[int(last)] if isinstance(node, list) else node.get(last)
            if actual != op["value"]:
                raise ValueError(f"test failed at {op['path']}: {actual!r} != {op['value']!r}")
        elif isinstance(node, list):
            if last == "-":
                node.append(op["value"])
            elif op["op"] == "add":
                node.insert(int(last), op["value"])
            else:
                node[int(last)] = op["value"]
        else:
            if op["op"] == "replace" and last not in node:
                raise ValueError(f"replace of a missing {op['path']}")
            node[last] = op["value"]
    return doc


@pytest.fixture(scope="module")
def isvc() -> Obj:
    return next(o for o in render("milestone1") if o["kind"] == "InferenceService" and o["metadata"]["name"] == "ocr")


def _version_fields(obj: Obj) -> tuple[str, str, str]:
    predictor = obj["spec"]["predictor"]
    env = {e["name"]: e.get("value") for e in predictor["containers"][0]["env"]}
    return (
        obj["metadata"]["labels"][rollout.VERSION_LABEL],
        predictor["labels"][rollout.VERSION_LABEL],
        env[rollout.VERSION_ENV],
    )


def test_the_patch_moves_the_label_the_pod_label_and_the_env_together(isvc: Obj) -> None:
    plan = rollout.plan_rollout(isvc, "v2")
    assert (plan.namespace, plan.name, plan.previous, plan.deployment) == ("ocr-dev", "ocr", "v1", "ocr-predictor")
    patched = apply_patch(isvc, plan.patch)
    assert _version_fields(patched) == ("v2", "v2", "v2")
    # Nothing else changes: the same object with the old version put back is the original.
    restored = apply_patch(patched, rollout.plan_rollout(patched, "v1").patch)
    assert restored == isvc
    assert "v1 -> v2" in plan.describe() and "/spec/predictor/labels/app.kubernetes.io~1version" in plan.describe()


@pytest.mark.skipif(not CRD_DIR.is_dir(), reason=f"no CRDs at {CRD_DIR}")
def test_the_patched_object_still_validates_against_the_kserve_crd(isvc: Obj) -> None:
    patched = apply_patch(isvc, rollout.plan_rollout(isvc, "2026.11.27-rc1").patch)
    assert [str(f) for f in SchemaCatalog(CRD_DIR).validate(patched)] == []


def test_the_patch_refuses_to_apply_to_an_object_that_changed_under_it(isvc: Obj) -> None:
    plan = rollout.plan_rollout(isvc, "v2")
    moved = copy.deepcopy(isvc)
    env = moved["spec"]["predictor"]["containers"][0]["env"]
    env.insert(0, env.pop())  # OCR_MODEL_VERSION is no longer where the plan saw it
    with pytest.raises(ValueError, match="test failed"):
        apply_patch(moved, plan.patch)


def test_an_object_without_labels_or_the_variable_gets_them_added() -> None:
    bare = {
        "metadata": {"name": "ocr", "namespace": "ns"},
        "spec": {"predictor": {"containers": [{"name": "sidecar"}, {"name": "kserve-container", "image": "ocr:dev"}]}},
    }
    plan = rollout.plan_rollout(bare, "v3")
    assert plan.previous is None
    patched = apply_patch(bare, plan.patch)
    assert patched["metadata"]["labels"] == {rollout.VERSION_LABEL: "v3"}
    assert patched["spec"]["predictor"]["labels"] == {rollout.VERSION_LABEL: "v3"}
    assert patched["spec"]["predictor"]["containers"][1]["env"] == [{"name": rollout.VERSION_ENV, "value": "v3"}]
    assert "env" not in patched["spec"]["predictor"]["containers"][0]


@pytest.mark.parametrize("bad", ["", "-v2", "v2-", "v 2", "a" * 64, "v2/3", "v2+build"])
def test_a_version_that_is_not_a_label_value_is_refused(isvc: Obj, bad: str) -> None:
    with pytest.raises(HarnessError, match="version"):
        rollout.plan_rollout(isvc, bad)


def test_a_predictor_without_the_serving_container_is_refused() -> None:
    with pytest.raises(HarnessError, match="kserve-container"):
        rollout.plan_rollout({"metadata": {"name": "x"}, "spec": {"predictor": {"containers": [{"name": "a"}]}}}, "v2")


# --- when a rollout is done --------------------------------------------------------------------------------


def _deployment(version: str, *, generation: int = 3, observed: int = 3, replicas: int = 2, updated: int = 2,
                available: int = 2, current: int = 2) -> Obj:  # fmt: skip
    env = [{"name": rollout.VERSION_ENV, "value": version}]
    return {
        "metadata": {"name": "ocr-predictor", "generation": generation},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "kserve-container", "env": env}]}},
        },
        "status": {"observedGeneration": observed, "replicas": current, "updatedReplicas": updated,
                   "availableReplicas": available},
    }  # fmt: skip


def _pod(version: str, *, terminating: bool = False) -> Obj:
    meta: Obj = {"labels": {rollout.VERSION_LABEL: version}}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-27T05:00:00Z"
    return {"metadata": meta}


READY = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_a_rollout_is_done_when_every_pod_runs_the_new_version() -> None:
    done = rollout.rollout_progress(READY, _deployment("v2"), [_pod("v2"), _pod("v2")], "v2")
    assert done.done, done
    assert done.seen["pods_by_version"] == {"v2": 2}
    # An old pod in its preStop pause may still be sent requests until the gateway drops its endpoint.
    draining = rollout.rollout_progress(
        READY, _deployment("v2"), [_pod("v2"), _pod("v2"), _pod("v1", terminating=True)], "v2"
    )
    assert not draining.done, draining
    assert draining.seen["terminating_by_version"] == {"v1": 1}
    # A new-version pod terminating (a scale-in during the rollout) holds nothing up.
    scaled_in = rollout.rollout_progress(
        READY, _deployment("v2"), [_pod("v2"), _pod("v2"), _pod("v2", terminating=True)], "v2"
    )
    assert scaled_in.done, scaled_in


@pytest.mark.parametrize(
    ("deployment", "pods", "why"),
    [
        (_deployment("v1"), [_pod("v1"), _pod("v1")], "KServe has not written the new template yet"),
        (_deployment("v2", observed=2), [_pod("v2"), _pod("v2")], "the Deployment has not seen its spec"),
        (_deployment("v2", updated=1, current=3), [_pod("v2"), _pod("v1"), _pod("v1")], "an old pod still serves"),
        (_deployment("v2", available=1), [_pod("v2"), _pod("v2")], "a new pod is not available yet"),
        (None, [], "no Deployment"),
    ],
)
def test_a_rollout_in_progress_is_not_done(deployment: Obj | None, pods: list[Obj], why: str) -> None:
    assert not rollout.rollout_progress(READY, deployment, pods, "v2").done, why


def test_a_not_ready_inference_service_is_not_done() -> None:
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert not rollout.rollout_progress(not_ready, _deployment("v2"), [_pod("v2"), _pod("v2")], "v2").done


# --- on a cluster (a recording stand-in for the Kubernetes client) ------------------------------------------


class FakeKube:
    def __init__(self, isvc: Obj) -> None:
        self.isvc = copy.deepcopy(isvc)
        self.calls: list[tuple[str, ...]] = []
        self.version = "v1"
        self.polls = 0

    def custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> Obj:
        assert (group, version, plural, namespace, name) == ("serving.kserve.io", "v1beta1", "inferenceservices",
                                                             "ocr-dev", "ocr")  # fmt: skip
        return {**copy.deepcopy(self.isvc), **READY}

    def kubectl(self, *args: str, timeout: float = 60, input: bytes | None = None) -> str:
        self.calls.append(args)
        self.isvc = apply_patch(self.isvc, json.loads(args[args.index("-p") + 1]))
        return ""

    def deployment(self, namespace: str, name: str) -> Obj:
        self.polls += 1
        template_version = _version_fields(self.isvc)[2]
        # The new pods are ready from the second look on.
        return _deployment(template_version, updated=2 if self.polls > 1 else 1)

    def pods(self, namespace: str, selector: str) -> list[Obj]:
        assert selector == "serving.kserve.io/inferenceservice=ocr"
        version = _version_fields(self.isvc)[2]
        return [_pod(version), _pod(version)] if self.polls > 1 else [_pod("v1"), _pod(version)]


def test_a_cluster_rollout_patches_once_then_waits_for_the_new_revision(isvc: Obj) -> None:
    kube = FakeKube(isvc)
    last = rollout.ClusterRollout(kube, "ocr-dev", "ocr").run("v2", timeout=30)
    assert last.done and last.seen["pods_by_version"] == {"v2": 2}
    (call,) = kube.calls
    assert call[:6] == ("-n", "ocr-dev", "patch", "inferenceservice", "ocr", "--type=json")
    assert kube.polls >= 2


def test_the_wait_names_the_last_state_seen_at_its_deadline() -> None:
    stuck = rollout.Progress(False, {"pods_by_version": {"v1": 1, "v2": 1}, "available": 1})
    with pytest.raises(WaitTimeout) as info:
        rollout.wait_for_rollout(lambda: stuck, "v2", timeout=0.2, interval=0.05)
    assert "rollout of version v2" in str(info.value)
    assert "'pods_by_version': {'v1': 1, 'v2': 1}" in str(info.value)


# --- the order of a handover on a cluster: a new pod ready before each old one goes -------------------------


def _named(name: str, version: str, *, ready: bool = False, terminating: bool = False) -> Obj:
    pod = _pod(version, terminating=terminating)
    pod["metadata"]["name"] = name
    pod["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return pod


def _timeline(looks: list[list[Obj]]) -> rollout.PodTimeline:
    timeline = rollout.PodTimeline(started=0.0)
    for i, pods in enumerate(looks):
        timeline.observe(pods, at=i * 0.25)
    return timeline


def test_a_surge_rollout_hands_over_in_order() -> None:
    # maxSurge 1, maxUnavailable 0: a new pod is Ready before each old one starts terminating.
    old_a, old_b = _named("a", "v1", ready=True), _named("b", "v1", ready=True)
    looks = [
        [old_a, old_b],
        [old_a, old_b, _named("c", "v2")],
        [old_a, old_b, _named("c", "v2", ready=True)],
        [_named("a", "v1", terminating=True), old_b, _named("c", "v2", ready=True), _named("d", "v2")],
        [old_b, _named("c", "v2", ready=True), _named("d", "v2", ready=True)],
        [_named("b", "v1", terminating=True), _named("c", "v2", ready=True), _named("d", "v2", ready=True)],
        [_named("c", "v2", ready=True), _named("d", "v2", ready=True)],
    ]
    order = rollout.handover_order(_timeline(looks), "v2")
    assert order["old_pods"] == 2 and not order["violations"] and not order["unknown"], order
    assert [h["new_pods_ready_by_then"] for h in order["handovers"]] == [1, 2]
    assert order["max_gap_s"] == 0.25 and order["looks"] == len(looks)


def test_an_old_pod_going_before_a_new_one_is_ready_is_a_violation() -> None:
    # maxUnavailable 1: an old pod goes at once, while the new one still loads its model.
    looks = [
        [_named("a", "v1", ready=True), _named("b", "v1", ready=True)],
        [_named("a", "v1", terminating=True), _named("b", "v1", ready=True), _named("c", "v2")],
        [_named("b", "v1", ready=True), _named("c", "v2", ready=True)],
    ]
    order = rollout.handover_order(_timeline(looks), "v2")
    assert [v["old_pod"] for v in order["violations"]] == ["a"], order


def test_an_old_pod_that_vanished_between_looks_has_no_known_order() -> None:
    looks = [
        [_named("a", "v1", ready=True), _named("c", "v2", ready=True)],
        [_named("c", "v2", ready=True)],
    ]
    order = rollout.handover_order(_timeline(looks), "v2")
    assert order["unknown"] == ["a"] and not order["handovers"], order


def test_a_cluster_rollout_records_every_pod_it_saw(isvc: Obj) -> None:
    kube = FakeKube(isvc)
    timeline = rollout.PodTimeline()
    rollout.ClusterRollout(kube, "ocr-dev", "ocr").run("v2", timeout=30, timeline=timeline, interval=0.05)
    assert timeline.looks >= 3  # one before the patch, then one per progress look


def test_the_timeline_keeps_when_each_pod_was_first_seen_ready_terminating_and_gone() -> None:
    timeline = rollout.PodTimeline(started=100.0)
    # Still Ready while its deletion has begun (the preStop pause): terminating, and never counted as ready.
    going = _named("a", "v1", ready=True, terminating=True)
    timeline.observe([going, _named("b", "v2")], at=100.25)
    timeline.observe([_named("b", "v2", ready=True)], at=100.5)
    timeline.observe([_named("b", "v2", ready=True)], at=101.0)
    assert timeline.pods["a"] == {"version": "v1", "first_seen": 0.25, "terminating_at": 0.25, "gone_at": 0.5}
    assert timeline.pods["b"] == {"version": "v2", "first_seen": 0.25, "ready_at": 0.5}
    assert (timeline.looks, timeline.max_gap_s) == (3, 0.5)


def test_a_new_pod_seen_ready_in_the_same_look_as_an_old_one_going_counts_as_in_time() -> None:
    # Looks a quarter-second apart cannot order two events seen in the same look: they count as simultaneous.
    looks = [
        [_named("a", "v1", ready=True), _named("c", "v2")],
        [_named("a", "v1", terminating=True), _named("c", "v2", ready=True)],
    ]
    order = rollout.handover_order(_timeline(looks), "v2")
    assert order["handovers"] == [{"old_pod": "a", "terminating_at": 0.25, "new_pods_ready_by_then": 1}]
    assert order["new_ready_at"] == [0.25] and not order["violations"], order
