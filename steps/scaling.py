"""Replica steps: HPA, KEDA and Knative scaling, observed through the target's replica counts."""

from __future__ import annotations

from pytest_bdd import given, parsers, then

from harness.evidence import ScenarioEvidence
from harness.targets import Target
from steps.common import consistently, eventually

COMPONENTS = {"predictor": "predictor", "workers": "worker"}


def _minutes(amount: int, unit: str) -> float:
    return amount * 60.0 if unit.startswith("minute") else float(amount)


@given(parsers.parse("the {component} runs {n:d} replica"))
@given(parsers.parse("the {component} runs {n:d} replicas"))
@then(parsers.parse("the {component} runs {n:d} replicas"))
def runs_exactly_now(target: Target, evidence: ScenarioEvidence, component: str, n: int) -> None:
    seen = eventually(
        evidence, f"{component} at {n} replicas", lambda: target.replicas(COMPONENTS[component]),
        lambda r: r == n, seconds=120, interval=2,
    )  # fmt: skip
    evidence.record(f"{component}_replicas", seen)


@then(parsers.parse("the {component} runs at least {n:d} ready replicas within {amount:d} {unit}"))
def scales_out(target: Target, evidence: ScenarioEvidence, component: str, n: int, amount: int, unit: str) -> None:
    seen = eventually(
        evidence, f"{component} at least {n} replicas", lambda: target.replicas(COMPONENTS[component]),
        lambda r: r >= n, seconds=_minutes(amount, unit), interval=3,
    )  # fmt: skip
    evidence.record(f"{component}_replicas_reached", seen)


@then(parsers.parse("the {component} runs {n:d} replicas within {amount:d} {unit}"))
@then(parsers.parse("the {component} runs {n:d} replica within {amount:d} {unit}"))
def scales_to(target: Target, evidence: ScenarioEvidence, component: str, n: int, amount: int, unit: str) -> None:
    seen = eventually(
        evidence, f"{component} at {n} replicas", lambda: target.replicas(COMPONENTS[component]),
        lambda r: r == n, seconds=_minutes(amount, unit), interval=3,
    )  # fmt: skip
    evidence.record(f"{component}_replicas_reached", seen)


@then(parsers.parse("the {component} stays at {n:d} replicas for {amount:d} {unit}"))
def stays_at(target: Target, evidence: ScenarioEvidence, component: str, n: int, amount: int, unit: str) -> None:
    consistently(
        evidence, f"{component} stays at {n}", lambda: target.replicas(COMPONENTS[component]),
        lambda r: r == n, seconds=_minutes(amount, unit), interval=3,
    )  # fmt: skip
