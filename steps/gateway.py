"""Steps at the gateway: API keys, the tenant taken from the key, and the per-key rate limit.

The same words run on every target that has a gateway: HAProxy on loopback locally, the Istio ingress
gateway on a cluster. The target says where the gateway is; the steps never do.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.gateway import requests_per_second
from harness.acceptance.load import PacedResult, ensure_loopback, paced
from harness.acceptance.targets import Cluster, Gateway, Target, log_events, need
from harness.provisioning import samples
from steps.common import eventually

TINY_IMAGE = samples.text_line("ok").encode()

# Who answered. The service marks every answer it makes with X-Request-ID (service/api/context.py, and the
# raw-protocol errors of service/api/server.py); the gateway's own answers (its refusals, Envoy's and HAProxy's
# 5xx) carry none. A request is admitted only when the service answered it.
LIMITED = "refused: limit"  # 429 at the gateway
NO_KEY = "refused: key"  # 403 at the gateway (the authorizer's denial, or the gateway failing closed)
SERVED = "served"  # 2xx from the service
SERVICE_4XX = "service 4xx"
SERVICE_5XX = "service 5xx"
GATEWAY_5XX = "gateway 5xx"
GATEWAY_OTHER = "gateway other"  # e.g. a 404 for a host the gateway does not route
TRANSPORT = "transport"  # no HTTP answer at all
ADMITTED = (SERVED, SERVICE_4XX, SERVICE_5XX)
# Answers that break every gateway scenario: the service or the gateway failing, or no answer.
FAILURES = (SERVICE_5XX, GATEWAY_5XX, TRANSPORT)


def classify(response: httpx.Response) -> str:
    """What kind of answer ``response`` is: a gateway refusal, the service's answer, or a gateway failure."""
    by_service = "x-request-id" in response.headers
    status = response.status_code
    if status == 429 and not by_service:
        return LIMITED
    if status == 403 and not by_service:
        return NO_KEY
    if not by_service:
        return GATEWAY_5XX if status >= 500 else GATEWAY_OTHER
    if status >= 500:
        return SERVICE_5XX
    return SERVED if status < 300 else SERVICE_4XX


def gateway_post(
    target: Target,
    client: httpx.Client,
    api_key: str | None,
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if api_key is not None:
        sent["x-api-key"] = api_key
    host = host or need(target, Gateway).host_header()
    if host:
        sent["host"] = host
    return client.post(
        f"{need(target, Gateway).gateway_url()}/predict", files={"file": ("tiny.png", TINY_IMAGE)}, headers=sent
    )


def per_second(result: PacedResult) -> dict[int, dict[str, int]]:
    """Each kind of answer in each second since the first request was sent."""
    seconds: dict[int, dict[str, int]] = {}
    for answer in result.answers:
        bucket = seconds.setdefault(int(answer.at), {})
        bucket[answer.kind] = bucket.get(answer.kind, 0) + 1
    return seconds


def record_paced(evidence: ScenarioEvidence, results: dict[str, PacedResult], **about: Any) -> None:
    """Counts per key by status and by kind of answer, and per key per second, in the evidence; each request's
    time, status, kind and latency in a file."""
    evidence.record(
        "paced", {name: {**about, "statuses": r.statuses(), "kinds": r.kinds()} for name, r in results.items()}
    )
    evidence.record("per_second", {name: per_second(r) for name, r in results.items()})
    evidence.record("rate_limit_per_s", requests_per_second())  # the platform's per-key limit, for the plot
    for name, result in results.items():
        evidence.write_json(f"requests-{name}", [[a.at, a.status, a.kind, a.seconds] for a in result.answers])


def no_failures(results: dict[str, PacedResult]) -> None:
    """Every request was answered, by the gateway's refusal or the service, and nothing failed (5xx, no
    answer): a failing service must never read as a working gateway."""
    failed = {name: {k: n for k, n in r.kinds().items() if k in FAILURES} for name, r in results.items()}
    every = {name: r.kinds() for name, r in results.items()}
    assert not any(failed.values()), f"failed answers {failed}; all answers {every}"


@given(parsers.parse('the API keys "{first}" and "{second}" are provisioned'), target_fixture="api_keys")
def keys_provisioned(target: Target, evidence: ScenarioEvidence, first: str, second: str) -> dict[str, str]:
    keys = need(target, Gateway).api_keys()
    missing = [name for name in (first, second) if name not in keys]
    assert not missing, f"API keys not provisioned for {missing}; have {sorted(keys)}"
    evidence.record("api_key_clients", sorted(keys))  # names only: key values never go to evidence
    evidence.record("gateway", need(target, Gateway).describe_gateway())
    return keys


@when("a client without an API key sends a small image through the gateway")
def no_key(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence) -> None:
    ctx["response"] = gateway_post(target, client, None)
    evidence.record("gateway_status", ctx["response"].status_code)


@when(parsers.parse('a client with the API key "{key}" sends a small image through the gateway'))
def unknown_key(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, key: str) -> None:
    ctx["response"] = gateway_post(target, client, key)
    evidence.record("gateway_status", ctx["response"].status_code)


@when(parsers.parse('"{name}" sends a small image through the gateway'))
def named_client(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, api_keys: dict, name: str
) -> None:
    ctx["response"] = gateway_post(target, client, api_keys[name])
    evidence.record("gateway_status", ctx["response"].status_code)


@when(parsers.parse('"{name}" sends a small image through the gateway claiming to be tenant "{claimed}"'))
def claims_tenant(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, api_keys: dict, name: str,
    claimed: str,
) -> None:  # fmt: skip
    request_id = f"tenant-claim-{uuid.uuid4().hex[:12]}"
    ctx["request_id"] = request_id
    ctx["response"] = gateway_post(
        target, client, api_keys[name], headers={"X-Tenant-ID": claimed, "X-Request-ID": request_id}
    )
    evidence.record("claimed_tenant", {"client": name, "claimed": claimed, "request_id": request_id})


@given("the rate-limit service is down")
def rate_limit_down(target: Target, evidence: ScenarioEvidence) -> None:
    evidence.record("stopped", need(target, Cluster).stop_rate_limit_service())  # restarted when the scenario ends


@given("the API-key authorizer is down")
def authorizer_down(target: Target, evidence: ScenarioEvidence) -> None:
    evidence.record("stopped", need(target, Gateway).stop_api_key_authorizer())  # restarted when the scenario ends


@given(parsers.parse('"{name}" has been throttled sending {rate:d} requests per second for {seconds:d} seconds'))
def throttled(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int,
    seconds: int,
) -> None:  # fmt: skip
    result = _paced_from(target, client, api_keys[name], rate, seconds)
    record_paced(evidence, {name: result}, rate=rate, seconds=seconds)
    no_failures({name: result})
    assert result.count(429) > 0, f"{name} was not throttled: {result.kinds()}"


@when(parsers.parse('"{name}" sends a small image through the gateway after a pause of {seconds:d} seconds'))
def after_pause(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, api_keys: dict, name: str,
    seconds: int,
) -> None:  # fmt: skip
    evidence.record("paused_s", seconds)
    time.sleep(seconds)  # the scenario's own pause, said in its text
    ctx["response"] = gateway_post(target, client, api_keys[name])
    evidence.record("gateway_status", ctx["response"].status_code)


@then(parsers.parse("the gateway answers {status:d}"))
def gateway_answers(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("gateway_answer", {"status": response.status_code, "body": response.text[:300]})
    assert response.status_code == status, (response.status_code, response.text[:300])
    if status >= 400:
        # Refused at the door with a JSON error, as the service refuses: code, message, request id.
        error = response.json()["error"]
        assert error["code"] and error["message"] and "request_id" in error, error


@then(parsers.parse("the gateway refuses the request with {status:d}"))
def gateway_refuses(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    # Only the status: a refusal the gateway makes on its own (its authorizer unreachable) has no JSON body.
    response: httpx.Response = ctx["response"]
    evidence.record("gateway_answer", {"status": response.status_code, "body": response.text[:300]})
    assert response.status_code == status, (response.status_code, response.text[:300])


@then(parsers.parse("the gateway answers {status:d} with the text read"))
def gateway_answers_text(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("gateway_answer", {"status": response.status_code, "body": response.text[:300]})
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json()["text"] == "ok"


@then(parsers.parse('the service logs that request with tenant "{tenant}"'))
def logged_tenant(target: Target, ctx: dict, evidence: ScenarioEvidence, tenant: str) -> None:
    # The id the service answered with is the one it logged: an edge proxy may replace the one the client
    # sent (Envoy does for requests it counts as external).
    request_id = ctx["response"].json().get("request_id") or ctx["request_id"]
    evidence.record("request_ids", {"sent": ctx["request_id"], "answered": request_id})
    lines = eventually(
        evidence, f"service log line for {request_id}",
        lambda: [e for e in log_events(target, "service") if e.get("request_id") == request_id],
        lambda found: len(found) >= 1, seconds=15, interval=0.5,
    )  # fmt: skip
    evidence.record("logged_tenants", [e.get("tenant_id") for e in lines])
    assert [e.get("tenant_id") for e in lines] == [tenant], lines


def _paced_from(
    target: Target, client: httpx.Client, key: str, rate: float, seconds: float, host: str | None = None
) -> PacedResult:
    ensure_loopback(need(target, Gateway).gateway_url())

    def send() -> tuple[int, str]:
        response = gateway_post(target, client, key, host)
        return response.status_code, classify(response)

    return paced(send, rate=rate, seconds=seconds)


def _concurrently(
    target: Target, client: httpx.Client, api_keys: dict, rates: dict[str, int], seconds: int
) -> dict[str, PacedResult]:
    with ThreadPoolExecutor(len(rates)) as pool:
        futures = {n: pool.submit(_paced_from, target, client, api_keys[n], r, seconds) for n, r in rates.items()}
        return {name: future.result() for name, future in futures.items()}


@when(
    parsers.parse('"{name}" sends {rate:d} requests per second with a tiny image for {seconds:d} seconds'),
    target_fixture="paced_results",
)
def one_client_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int, seconds: int
) -> dict[str, PacedResult]:
    results = {name: _paced_from(target, client, api_keys[name], rate, seconds)}
    record_paced(evidence, results, rate=rate, seconds=seconds)
    return results


@when(
    parsers.parse(
        '"{first}" sends {rate1:d} requests per second and "{second}" sends {rate2:d} per second'
        " for {seconds:d} seconds"
    ),
    target_fixture="paced_results",
)
def two_clients_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, first: str, rate1: int,
    second: str, rate2: int, seconds: int,
) -> dict[str, PacedResult]:  # fmt: skip
    results = _concurrently(target, client, api_keys, {first: rate1, second: rate2}, seconds)
    record_paced(evidence, results, seconds=seconds)
    return results


@when(
    parsers.parse('"{first}" and "{second}" each send {rate:d} requests per second for {seconds:d} seconds'),
    target_fixture="paced_results",
)
def both_clients_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, first: str, second: str,
    rate: int, seconds: int,
) -> dict[str, PacedResult]:  # fmt: skip
    results = _concurrently(target, client, api_keys, {first: rate, second: rate}, seconds)
    record_paced(evidence, results, rate=rate, seconds=seconds)
    return results


@when(
    parsers.parse(
        '"{name}" sends {rate:d} requests per second to each of the OCR and layout hosts for {seconds:d} seconds'
    ),
    target_fixture="paced_results",
)
def every_host_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int, seconds: int
) -> dict[str, PacedResult]:
    hosts = [need(target, Gateway).host_header(), *need(target, Gateway).alternate_hosts()]
    assert len(hosts) == 2 and all(hosts), f"target {target.name} names no second host of its gateway: {hosts}"
    with ThreadPoolExecutor(len(hosts)) as pool:
        futures = {
            str(h): pool.submit(_paced_from, target, client, api_keys[name], rate, seconds, host=h) for h in hosts
        }
        results = {host: future.result() for host, future in futures.items()}
    record_paced(evidence, results, client=name, rate=rate, seconds=seconds)
    return results


def _admitted(result: PacedResult) -> int:
    """Requests the service answered; any failed answer (5xx, none) fails the scenario, with the counts."""
    no_failures({"requests": result})
    return sum(1 for a in result.answers if a.kind in ADMITTED)


@then(parsers.parse("at most {high:d} of its requests are admitted"))
def admitted_at_most(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, high: int) -> None:
    (result,) = paced_results.values()
    evidence.record("admitted", _admitted(result))
    assert _admitted(result) <= high, result.statuses()


@then(parsers.parse("between {low:d} and {high:d} of its requests are admitted"))
def admitted_between(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, low: int, high: int) -> None:
    (result,) = paced_results.values()
    evidence.record("admitted", _admitted(result))
    assert low <= _admitted(result) <= high, result.statuses()


@then(parsers.parse("between {low:d} and {high:d} of its requests are admitted across both hosts"))
def admitted_between_across(
    paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, low: int, high: int
) -> None:
    admitted = {host: _admitted(result) for host, result in paced_results.items()}
    evidence.record("admitted_per_host", admitted)
    assert low <= sum(admitted.values()) <= high, {h: r.statuses() for h, r in paced_results.items()}


@then("each host answered some of its requests with 200")
def each_host_served(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence) -> None:
    # A host the gateway does not route answers 404 to all, without the service's mark: none is admitted.
    no_failures(paced_results)
    served = {host: result.kinds().get(SERVED, 0) for host, result in paced_results.items()}
    evidence.record("served_per_host", served)
    assert all(served.values()), {h: r.statuses() for h, r in paced_results.items()}


@then(parsers.parse('between {low:d} and {high:d} requests from "{name}" are admitted'))
def admitted_between_for(
    paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, low: int, high: int, name: str
) -> None:
    result = paced_results[name]
    evidence.record(f"admitted_{name}", _admitted(result))
    assert low <= _admitted(result) <= high, result.statuses()


@then(parsers.parse("every other request is answered {status:d}"))
def others_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, status: int) -> None:
    # Every request the service did not answer was refused by the gateway with this status, and only so.
    no_failures(paced_results)
    not_admitted = {name: {a.status for a in r.answers if a.kind not in ADMITTED} for name, r in paced_results.items()}
    evidence.record("refused_by_gateway", {name: r.kinds() for name, r in paced_results.items()})
    evidence.record("served", {name: r.kinds().get(SERVED, 0) for name, r in paced_results.items()})
    assert all(statuses <= {status} for statuses in not_admitted.values()), not_admitted


@then(parsers.parse('some requests from "{name}" are answered {status:d}'))
def some_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"kinds_{name}", result.kinds())
    no_failures(paced_results)
    assert result.count(status) > 0, result.kinds()


@then(parsers.parse('no request from "{name}" is refused with {status:d}'))
def none_refused(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"kinds_{name}", result.kinds())
    no_failures(paced_results)
    assert result.count(status) == 0, result.kinds()


@then(parsers.parse('every request from "{name}" is served'))
def all_served(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str) -> None:
    result = paced_results[name]
    evidence.record(f"kinds_{name}", result.kinds())
    no_failures(paced_results)
    assert result.kinds() == {SERVED: len(result.answers)}, result.kinds()


@given(
    parsers.parse('the latency of "{name}" alone at {rate:d} requests per second is measured for {seconds:d} seconds'),
    target_fixture="baseline",
)
def latency_alone(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int,
    seconds: int,
) -> dict[str, float]:  # fmt: skip
    result = _paced_from(target, client, api_keys[name], rate, seconds)
    record_paced(evidence, {f"{name}-alone": result}, rate=rate, seconds=seconds)
    no_failures({f"{name}-alone": result})
    assert result.kinds() == {SERVED: len(result.answers)}, result.kinds()
    baseline = {name: median(result.latencies(SERVED))}
    evidence.record("median_latency_alone_s", baseline)
    return baseline


@then(parsers.parse('the median latency of "{name}" is at most {factor:d} times its median alone'))
def latency_against_alone(
    paced_results: dict[str, PacedResult], baseline: dict[str, float], evidence: ScenarioEvidence, name: str,
    factor: int,
) -> None:  # fmt: skip
    loaded = median(paced_results[name].latencies(SERVED))
    evidence.record("median_latency_s", {"alone": baseline[name], "beside the other client": loaded})
    alone = baseline[name]
    assert loaded <= factor * alone, f"median {loaded:.3f} s beside the other client, {alone:.3f} s alone"
