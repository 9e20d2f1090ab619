"""Steps at the gateway: API keys, the tenant taken from the key, and the per-key rate limit.

The same words run on every target that has a gateway: HAProxy on loopback locally, the Istio ingress
gateway on a cluster. The target says where the gateway is; the steps never do.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness import samples
from harness.evidence import ScenarioEvidence
from harness.load import PacedResult, ensure_loopback, paced
from harness.targets import Target
from steps.common import eventually

TINY_IMAGE = samples.text_line("ok").encode()

# What the gateway itself answers: refused by the limit (429), refused for the key (403), or never reached
# (0, a transport error). Every other answer came from the service behind it: the gateway admitted the
# request, whether the service then read it (200) or said it was busy (503, 504) on a loaded machine.
GATEWAY_REFUSALS = (429, 403, 0)


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
    host = host or target.host_header()
    if host:
        sent["host"] = host
    return client.post(f"{target.gateway_url()}/predict", files={"file": ("tiny.png", TINY_IMAGE)}, headers=sent)


def per_second(result: PacedResult) -> dict[int, dict[str, int]]:
    """Requests admitted by the gateway and refused with 429 in each second since the first was sent, and
    anything else (403, transport errors)."""
    seconds: dict[int, dict[str, int]] = {}
    for at, status in result.sent:
        bucket = seconds.setdefault(int(at), {"admitted": 0, "refused": 0, "other": 0})
        bucket["refused" if status == 429 else "other" if status in GATEWAY_REFUSALS else "admitted"] += 1
    return seconds


def record_paced(evidence: ScenarioEvidence, results: dict[str, PacedResult], **about: Any) -> None:
    """Counts per key, and per key per second, in the evidence; each request's time and status in a file."""
    evidence.record("paced", {name: {**about, "statuses": r.statuses()} for name, r in results.items()})
    evidence.record("per_second", {name: per_second(r) for name, r in results.items()})
    for name, result in results.items():
        evidence.write_json(f"requests-{name}", result.sent)


@given(parsers.parse('the API keys "{first}" and "{second}" are provisioned'), target_fixture="api_keys")
def keys_provisioned(target: Target, evidence: ScenarioEvidence, first: str, second: str) -> dict[str, str]:
    keys = target.api_keys()
    missing = [name for name in (first, second) if name not in keys]
    assert not missing, f"API keys not provisioned for {missing}; have {sorted(keys)}"
    evidence.record("api_key_clients", sorted(keys))  # names only: key values never go to evidence
    evidence.record("gateway", target.describe_gateway())
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
    evidence.record("stopped", target.stop_rate_limit_service())  # restarted when the scenario ends


@given("the API-key authorizer is down")
def authorizer_down(target: Target, evidence: ScenarioEvidence) -> None:
    evidence.record("stopped", target.stop_api_key_authorizer())  # restarted when the scenario ends


@when(parsers.parse('"{name}" pauses for {seconds:d} seconds'))
def pauses(evidence: ScenarioEvidence, name: str, seconds: int) -> None:
    evidence.record("paused_s", seconds)
    time.sleep(seconds)  # the scenario's own pause, said in its text


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
        lambda: [e for e in target.log_events("service") if e.get("request_id") == request_id],
        lambda found: len(found) >= 1, seconds=15, interval=0.5,
    )  # fmt: skip
    evidence.record("logged_tenants", [e.get("tenant_id") for e in lines])
    assert [e.get("tenant_id") for e in lines] == [tenant], lines


def _paced_from(
    target: Target, client: httpx.Client, key: str, rate: float, seconds: float, host: str | None = None
) -> PacedResult:
    ensure_loopback(target.gateway_url())
    return paced(lambda: gateway_post(target, client, key, host).status_code, rate=rate, seconds=seconds)


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
    hosts = [target.host_header(), *target.alternate_hosts()]
    assert len(hosts) == 2 and all(hosts), f"target {target.name} names no second host of its gateway: {hosts}"
    with ThreadPoolExecutor(len(hosts)) as pool:
        futures = {
            str(h): pool.submit(_paced_from, target, client, api_keys[name], rate, seconds, host=h) for h in hosts
        }
        results = {host: future.result() for host, future in futures.items()}
    record_paced(evidence, results, client=name, rate=rate, seconds=seconds)
    # Every request must have reached the gateway: a transport error (0) would make "admitted" vacuous.
    assert all(r.count(0) == 0 for r in results.values()), {h: r.statuses() for h, r in results.items()}
    return results


def _admitted(result: PacedResult) -> int:
    return sum(1 for _, status in result.sent if status not in GATEWAY_REFUSALS)


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
    # A host the gateway does not route answers 404 to all: "admitted" would count them, and prove nothing.
    served = {host: result.count(200) for host, result in paced_results.items()}
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
    refused = {
        name: {s: n for s, n in r.statuses().items() if s in GATEWAY_REFUSALS} for name, r in paced_results.items()
    }
    evidence.record("refused_by_gateway", refused)
    evidence.record("served", {name: r.count(200) for name, r in paced_results.items()})
    assert all(set(o) <= {status} for o in refused.values()), refused


@then(parsers.parse('some requests from "{name}" are answered {status:d}'))
def some_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"statuses_{name}", result.statuses())
    assert result.count(status) > 0, result.statuses()


@then(parsers.parse('no request from "{name}" is refused with {status:d}'))
def none_refused(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"statuses_{name}", result.statuses())
    assert result.count(status) == 0 and result.count(0) == 0, result.statuses()


@then(parsers.parse('no request from "{name}" is answered {status:d}'))
def none_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"statuses_{name}", result.statuses())
    assert result.count(status) == 0, result.statuses()
    # And the gateway refused none of them for any other reason: all were admitted to the service.
    assert _admitted(result) == len(result.sent), result.statuses()
