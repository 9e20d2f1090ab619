"""Replica steps: HPA, KEDA and Knative scaling, observed through the target's replica counts."""

from __future__ import annotations

import time
from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.targets import Cluster, Jobs, Rollout, Target, need
from harness.provisioning import samples
from steps.common import eventually, image_reading, post_image, seconds_of, watch

COMPONENTS = {"predictor": "predictor", "workers": "worker"}
_WHO = r"the (?P<component>predictor|workers) runs?"
_N = r"(?P<n>\d+) (?:ready )?replicas?"
_WITHIN = r"within (?P<amount>\d+) (?P<unit>seconds?|minutes?)"


def _replicas(target: Target, component: str) -> int:
    return need(target, Rollout).replicas(COMPONENTS[component])


def _scaling(target: Target, component: str) -> dict[str, Any]:
    """Ready replicas and what the autoscaler sees: every probe of a wait lands in its timeline."""
    return need(target, Cluster).scaling(COMPONENTS[component])


# A precondition waits out what an earlier scenario left behind: the HPA's 300 s scale-down stabilisation,
# KEDA's cooldown (90 s) and the pods' termination grace.
SETTLE_S = 420


def _ready(seen: dict[str, Any]) -> int:
    return int(seen["ready"])


def _at(seen: dict[str, Any], n: int) -> bool:
    """Exactly ``n`` ready replicas; for 0, also none asked for and none existing (ready or starting)."""
    if n == 0:
        return _ready(seen) == 0 and seen.get("desired", 0) == 0 and seen.get("current", 0) == 0
    return _ready(seen) == n


@given(parsers.re(rf"^{_WHO} {_N}$"))
def runs_now(target: Target, evidence: ScenarioEvidence, component: str, n: str) -> None:
    seen = eventually(
        evidence, f"{component} at {n} replicas", lambda: _scaling(target, component),
        lambda s: _at(s, int(n)), seconds=SETTLE_S, interval=3,
    )  # fmt: skip
    evidence.record(f"{component}_replicas", seen)


@then(parsers.re(rf"^{_WHO} at least {_N} {_WITHIN}$"))
def scales_out(target: Target, evidence: ScenarioEvidence, component: str, n: str, amount: str, unit: str) -> None:
    seen = eventually(
        evidence, f"{component} at least {n} replicas", lambda: _scaling(target, component),
        lambda s: _ready(s) >= int(n), seconds=seconds_of(amount, unit), interval=3, threshold=int(n),
    )  # fmt: skip
    evidence.record(f"{component}_replicas_reached", seen)


@then(parsers.re(rf"^{_WHO} {_N} {_WITHIN}$"))
def scales_to(target: Target, evidence: ScenarioEvidence, component: str, n: str, amount: str, unit: str) -> None:
    seen = eventually(
        evidence, f"{component} at {n} replicas", lambda: _scaling(target, component),
        lambda s: _at(s, int(n)), seconds=seconds_of(amount, unit), interval=3, threshold=int(n),
    )  # fmt: skip
    evidence.record(f"{component}_replicas_reached", seen)


@given("a client has just been answered by the predictor")
def just_answered(target: Target, client: httpx.Client, evidence: ScenarioEvidence) -> None:
    # A predictor that was at zero already proves nothing about scaling to it: wake it first.
    response = post_image(client, target.service_url(), samples.text_line("Wake up").encode())
    evidence.record("wake", {"status": response.status_code, "replicas": _scaling(target, "predictor")})
    assert response.status_code == 200, response.text[:300]
    assert _ready(_scaling(target, "predictor")) >= 1


@when(parsers.parse('a client sends an image reading "{text}" to the predictor at zero'))
def wake_predictor(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, text: str) -> None:
    """The request that wakes a predictor at zero: how long it took, and when the API saw the new pod start."""
    cluster = need(target, Cluster)
    ctx["sample"] = image_reading(text)
    sent = time.time()
    ctx["response"] = post_image(client, target.service_url(), ctx["sample"].encode())
    answered = time.time()
    pod = cluster.newest_pod_start("predictor") or {}
    since = {k: round(v - sent, 2) for k, v in pod.items() if isinstance(v, float)}
    ctx["wake_s"] = round(answered - sent, 2)
    evidence.record("wake", {"status": ctx["response"].status_code, "answered_after_s": ctx["wake_s"],
                             "pod": pod.get("pod"), "pod_after_request_s": since})  # fmt: skip


@then(parsers.re(r"^the request that woke the predictor was answered within (?P<seconds>\d+) seconds$"))
def woke_within(ctx: dict, evidence: ScenarioEvidence, seconds: str) -> None:
    evidence.record("wake_budget_s", int(seconds))
    assert ctx["wake_s"] <= int(seconds), f"the waking request took {ctx['wake_s']} s (budget {seconds} s)"


@when("the predictor is left idle", target_fixture="idle_since")
def left_idle(evidence: ScenarioEvidence) -> float:
    # Nothing in this scenario sends another request from here on; the Then's deadline is counted from now.
    started = time.time()
    evidence.record("idle_since", round(started, 3))
    return started


@given("the job queue is empty")
def queue_empty(target: Target, evidence: ScenarioEvidence) -> None:
    seen = eventually(evidence, "no job waiting in the queue", need(target, Jobs).queue_lag, lambda lag: lag == 0,
                      seconds=60, interval=3)  # fmt: skip
    evidence.record("queue_lag_before", seen)


@when(parsers.re(r"^no job is enqueued for (?P<amount>\d+) (?P<unit>seconds?|minutes?)$"), target_fixture="idle_looks")
def no_job_enqueued(target: Target, evidence: ScenarioEvidence, amount: str, unit: str) -> list[dict[str, Any]]:
    return watch(evidence, "workers while no job is enqueued", lambda: _scaling(target, "workers"),
                 seconds=seconds_of(amount, unit), interval=3)  # fmt: skip


@then(parsers.re(r"^the workers stayed at (?P<n>\d+) replicas? throughout$"))
def stayed_at(idle_looks: list[dict[str, Any]], n: str) -> None:
    assert len(idle_looks) >= 5, f"too few looks at the workers: {idle_looks}"
    broken = [look for look in idle_looks if "error" in look["value"] or not _at(look["value"], int(n))]
    assert not broken, f"{len(broken)} of {len(idle_looks)} looks were not at {n} replicas, first: {broken[0]}"


@then("KEDA's ScaledObject for the workers is ready and drives its HPA")
def scaled_object_working(target: Target, evidence: ScenarioEvidence) -> None:
    # Workers at 0 prove nothing if KEDA cannot read the queue (a wrong password, a blocked port): they
    # would sit at 0 anyway. Ready means its scaler reached Redis; the HPA is the one KEDA made for it.
    seen = eventually(
        evidence, "the workers' ScaledObject ready", lambda: _scaling(target, "workers"),
        lambda s: bool((s.get("scaledobject") or {}).get("ready")), seconds=60, interval=3,
    )  # fmt: skip
    evidence.record("scaledobject", seen.get("scaledobject"))
    assert seen["scaledobject"]["hpa"] == "keda-hpa-ocr-worker", seen


@then(parsers.re(rf"^at least (?P<n>\d+) predictor replicas serve part of the load {_WITHIN}$"))
def replicas_serve(target: Target, evidence: ScenarioEvidence, n: str, amount: str, unit: str) -> None:
    # Replicas the autoscaler added prove nothing if the load never reaches them: count the pods that answered
    # /predict in the last minute, as Prometheus scraped them.
    job = target.scrape_job("predictor")
    expr = f'sum by (pod) (increase(ocr_http_requests_total{{job="{job}",route="/predict"}}[1m]))'
    prom = target.prometheus()

    def serving() -> dict[str, float]:
        return {s.labels.get("pod", "?"): round(s.value, 1) for s in prom.query(expr)}

    seen = eventually(
        evidence, f"at least {n} predictor pods answering /predict", serving,
        lambda pods: sum(1 for v in pods.values() if v > 0) >= int(n), seconds=seconds_of(amount, unit), interval=5,
    )  # fmt: skip
    evidence.record("requests_per_pod_last_minute", seen)
