"""Rollout steps: the predictor rolled to a new model version under steady load, as clients see it.

The load goes through the gateway (HAProxy locally, the Istio ingress gateway on a cluster) with a
one-line image, a few requests a second; each answer's status and model version are kept. The target
does the rollout its way (local: each replica restarted in turn behind the gateway; a cluster: the
InferenceService patched, KServe's Deployment rolling with maxUnavailable 0).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness import wait
from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.load import ensure_loopback
from harness.acceptance.rollout import Answer, SteadyLoad, switch_summary
from harness.acceptance.targets import Gateway, Rollout, Target, need
from harness.provisioning import samples

ONE_LINE = samples.text_line("ok").encode()
ROLLOUT_TIMEOUT_S = 600.0
STEADY_BEFORE_S = 3.0  # steady load before the rollout starts, and after it ends
SAMPLE_INTERVAL_S = 0.25


@dataclass
class RolloutRun:
    version: str
    report: dict[str, Any]
    answers: list[Answer]
    started: float
    ended: float
    summary: dict[str, Any]
    ready_replicas: list[tuple[float, int]] = field(default_factory=list)


def _new_version() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime())


@given(parsers.parse("the predictor runs {count:d} ready replicas behind the gateway"))
def replicas_behind_gateway(target: Target, evidence: ScenarioEvidence, count: int) -> None:
    serving = need(target, Rollout).ensure_service_replicas(count)
    evidence.record("replicas_behind_gateway", serving)
    assert serving >= count


@when(
    parsers.parse(
        '"{client}" sends {rate:d} requests per second with a one-line image while the predictor is rolled to a '
        "new model version"
    ),
    target_fixture="rollout_run",
)
def rolled_under_load(target: Target, evidence: ScenarioEvidence, client: str, rate: int) -> RolloutRun:
    url = f"{need(target, Gateway).gateway_url()}/predict"
    ensure_loopback(url)
    headers = {"x-api-key": need(target, Gateway).api_keys()[client]}
    if host := need(target, Gateway).host_header():
        headers["host"] = host
    version = _new_version()
    samples_seen: list[tuple[float, int]] = []
    with httpx.Client(timeout=60) as http:
        load = SteadyLoad(lambda: http.post(url, files={"file": ("line.png", ONE_LINE)}, headers=headers), rate=rate)
        load.start()
        stop_sampling = threading.Event()

        def sample_replicas() -> None:
            # Four looks a second, so that a short dip below capacity is seen; a look that gives no count (an
            # error, or -1: a status older than the rollout's spec) is kept as -1 and fails "never fewer".
            while not stop_sampling.wait(SAMPLE_INTERVAL_S):
                try:
                    ready = need(target, Rollout).replicas("predictor")
                except Exception:  # noqa: BLE001 - a failed look is an unknown reading, kept as such
                    ready = -1
                samples_seen.append((round(load.elapsed(), 2), ready))

        try:
            wait.until(lambda: load.answered(), lambda n: n >= rate * STEADY_BEFORE_S, timeout=60, interval=0.2,
                       what="steady load answered before the rollout")  # fmt: skip
            sampler = threading.Thread(target=sample_replicas, daemon=True)
            sampler.start()
            started = load.elapsed()
            report = need(target, Rollout).roll_out(version, timeout=ROLLOUT_TIMEOUT_S)
            ended = load.elapsed()
            stop_sampling.set()
            wait.until(lambda: load.answered(ended), lambda n: n >= rate * STEADY_BEFORE_S, timeout=60,
                       interval=0.2, what="steady load answered after the rollout")  # fmt: skip
        finally:
            stop_sampling.set()
            answers = load.stop()
    summary = switch_summary(answers, version, started, ended)
    evidence.record("rollout", {"version": version, "rate": rate, "target": report, "clients": summary,
                                "ready_replicas": samples_seen})  # fmt: skip
    evidence.write_json("rollout_answers.json", [vars(a) for a in answers])
    return RolloutRun(version, report, answers, started, ended, summary, samples_seen)


@then("no request failed")
def no_request_failed(rollout_run: RolloutRun) -> None:
    summary = rollout_run.summary
    assert summary["requests"] > 0, "no request was sent"
    assert summary["failed"] == 0, summary["failures"]


@then(parsers.parse("every answer names the new model version within {seconds:d} seconds of the rollout's start"))
def switched_within(rollout_run: RolloutRun, seconds: int) -> None:
    summary = rollout_run.summary
    assert summary["first_new_after_s"] is not None, f"no answer named {rollout_run.version}: {summary}"
    assert (summary["last_old_after_s"] or 0) <= seconds, summary


@then("every answer sent after the rollout names the new model version")
def all_new_after(rollout_run: RolloutRun) -> None:
    assert rollout_run.summary["old_after_rollout"] == 0, rollout_run.summary
    assert any(a.sent_at > rollout_run.ended and a.version == rollout_run.version for a in rollout_run.answers)


@then(parsers.parse("the predictor never had fewer than {count:d} ready replicas during the rollout"))
def capacity_kept(rollout_run: RolloutRun, count: int) -> None:
    seen = rollout_run.ready_replicas
    assert len(seen) >= 4, f"too few looks at the replicas during the rollout: {seen}"
    unknown = [at for at, n in seen if n < 0]
    assert not unknown, f"{len(unknown)} looks gave no replica count (at {unknown[:10]} s): capacity unproven"
    assert min(n for _, n in seen) >= count, seen


@then("each old pod began terminating only once a new pod was ready in its place")
def handed_over_in_order(rollout_run: RolloutRun) -> None:
    handover = rollout_run.report.get("handover")
    assert handover, f"the target reported no pod timeline: {rollout_run.report}"
    assert handover["old_pods"] > 0, f"no old pod was seen during the rollout: {handover}"
    assert handover["max_gap_s"] <= 1.0, f"the pods went unobserved for {handover['max_gap_s']} s: order unknown"
    assert not handover["unknown"], f"old pods with no time of going (vanished between looks?): {handover}"
    assert not handover["violations"], f"an old pod went before a new one was ready: {handover['violations']}"


def _drains(rollout_run: RolloutRun) -> list[dict[str, Any]]:
    replicas = rollout_run.report.get("replicas") or []
    assert replicas, f"the target reported no replica it rolled: {rollout_run.report}"
    missing = [r.get("replica") for r in replicas if "drain" not in r]
    assert not missing, f"replicas {missing} were rolled without their drain watched: {replicas}"
    return replicas


@then("each old replica answered /readyz 503 before the gateway took it out of rotation")
def unready_before_out(rollout_run: RolloutRun) -> None:
    for r in _drains(rollout_run):
        unready = r["drain"].get("readyz_503_after_s")
        assert unready is not None, f"replica {r['replica']} never answered /readyz 503 while draining: {r}"
        assert unready < r["out_of_rotation_after_s"], r


@then("the gateway took each old replica out of rotation before it stopped listening")
def out_before_closed(rollout_run: RolloutRun) -> None:
    for r in _drains(rollout_run):
        closed = r["drain"].get("stopped_listening_after_s")
        assert r["serving_when_taken_out"], f"replica {r['replica']} had exited when it left the rotation: {r}"
        assert closed is not None and r["out_of_rotation_after_s"] < closed, r


@then("each old replica exited 0 once it had stopped listening")
def exited_after_closing(rollout_run: RolloutRun) -> None:
    for r in _drains(rollout_run):
        assert r["exit_code"] == 0, r
        assert r["drain"]["stopped_listening_after_s"] <= r["exited_after_s"], r
