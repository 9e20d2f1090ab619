"""Replica steps: HPA, KEDA and Knative scaling, observed through the target's replica counts."""

from __future__ import annotations

from typing import Any

from pytest_bdd import given, parsers, then

from harness.evidence import ScenarioEvidence
from harness.targets import Target
from steps.common import consistently, eventually, seconds_of

COMPONENTS = {"predictor": "predictor", "workers": "worker"}
_WHO = r"the (?P<component>predictor|workers) runs?"
_N = r"(?P<n>\d+) (?:ready )?replicas?"
_WITHIN = r"within (?P<amount>\d+) (?P<unit>seconds?|minutes?)"


def _replicas(target: Target, component: str) -> int:
    return target.replicas(COMPONENTS[component])


def _scaling(target: Target, component: str) -> dict[str, Any]:
    """Ready replicas and what the autoscaler sees: every probe of a wait lands in its timeline."""
    return target.scaling(COMPONENTS[component])


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


@then(parsers.re(r"^the (?P<component>predictor|workers) stays? at (?P<n>\d+) replicas? for (?P<amount>\d+) "
                 r"(?P<unit>seconds?|minutes?)$"))  # fmt: skip
def stays_at(target: Target, evidence: ScenarioEvidence, component: str, n: str, amount: str, unit: str) -> None:
    consistently(
        evidence, f"{component} stays at {n}", lambda: _scaling(target, component),
        lambda s: _at(s, int(n)), seconds=seconds_of(amount, unit), interval=3, threshold=int(n),
    )  # fmt: skip


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
