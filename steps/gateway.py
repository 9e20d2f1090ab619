"""Steps at the ingress gateway: API keys and the per-key rate limit."""

from __future__ import annotations

import httpx
from pytest_bdd import given, parsers, then, when

from harness import samples
from harness.evidence import ScenarioEvidence
from harness.load import PacedResult, ensure_loopback, paced
from harness.targets import Target

TINY_IMAGE = samples.text_line("ok").encode()


def gateway_post(target: Target, client: httpx.Client, api_key: str | None, host: str | None = None) -> httpx.Response:
    headers = {}
    if api_key is not None:
        headers["x-api-key"] = api_key
    host = host or target.host_header()
    if host:
        headers["host"] = host
    return client.post(f"{target.gateway_url()}/predict", files={"file": ("tiny.png", TINY_IMAGE)}, headers=headers)


@given(parsers.parse('the API keys "{first}" and "{second}" are provisioned'), target_fixture="api_keys")
def keys_provisioned(target: Target, evidence: ScenarioEvidence, first: str, second: str) -> dict[str, str]:
    keys = target.api_keys()
    missing = [name for name in (first, second) if name not in keys]
    assert not missing, f"API keys not provisioned for {missing}; have {sorted(keys)}"
    evidence.record("api_key_clients", sorted(keys))  # names only: key values never go to evidence
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


@then(parsers.parse("the gateway answers {status:d}"))
def gateway_answers(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("gateway_answer", {"status": response.status_code, "body": response.text[:300]})
    assert response.status_code == status, (response.status_code, response.text[:300])


@then(parsers.parse("the gateway answers {status:d} with the text read"))
def gateway_answers_text(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("gateway_answer", {"status": response.status_code, "body": response.text[:300]})
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json()["text"] == "ok"


def _paced_from(
    target: Target, client: httpx.Client, key: str, rate: float, seconds: float, host: str | None = None
) -> PacedResult:
    ensure_loopback(target.gateway_url())
    return paced(lambda: gateway_post(target, client, key, host).status_code, rate=rate, seconds=seconds)


@when(
    parsers.parse('"{name}" sends {rate:d} requests per second with a tiny image for {seconds:d} seconds'),
    target_fixture="paced_results",
)
def one_client_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int, seconds: int
) -> dict[str, PacedResult]:
    result = _paced_from(target, client, api_keys[name], rate, seconds)
    evidence.record("paced", {name: {"rate": rate, "seconds": seconds, "statuses": result.statuses()}})
    evidence.write_json(f"requests-{name}", result.sent)
    return {name: result}


@when(
    parsers.parse(
        '"{first}" sends {rate1:d} requests per second and "{second}" sends {rate2:d} per second'
        " for {seconds:d} seconds"
    ),
    target_fixture="paced_results",
)
def two_clients_paced(
    target: Target,
    client: httpx.Client,
    evidence: ScenarioEvidence,
    api_keys: dict,
    first: str,
    rate1: int,
    second: str,
    rate2: int,
    seconds: int,
) -> dict[str, PacedResult]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(_paced_from, target, client, api_keys[first], rate1, seconds)
        b = pool.submit(_paced_from, target, client, api_keys[second], rate2, seconds)
        results = {first: a.result(), second: b.result()}
    evidence.record("paced", {n: r.statuses() for n, r in results.items()})
    return results


@when(
    parsers.parse(
        '"{name}" sends {rate:d} requests per second to the predictor\'s other host name for {seconds:d} seconds'
    ),
    target_fixture="paced_results",
)
def other_host_paced(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, api_keys: dict, name: str, rate: int, seconds: int
) -> dict[str, PacedResult]:
    hosts = target.alternate_hosts()
    assert hosts, f"target {target.name} names no other host of the predictor"
    result = _paced_from(target, client, api_keys[name], rate, seconds, host=hosts[0])
    evidence.record(
        "paced", {name: {"host": hosts[0], "rate": rate, "seconds": seconds, "statuses": result.statuses()}}
    )
    # Every request must have reached the gateway: a transport error (0) would make "admitted" vacuous.
    assert result.count(0) == 0, result.statuses()
    return {name: result}


@then(parsers.parse("at most {high:d} of its requests are admitted"))
def admitted_at_most(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, high: int) -> None:
    (result,) = paced_results.values()
    admitted = result.count(200)
    evidence.record("admitted", admitted)
    assert admitted <= high, result.statuses()


@then(parsers.parse("between {low:d} and {high:d} of its requests are admitted"))
def admitted_between(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, low: int, high: int) -> None:
    (result,) = paced_results.values()
    admitted = result.count(200)
    evidence.record("admitted", admitted)
    assert low <= admitted <= high, result.statuses()


@then(parsers.parse("every other request is answered {status:d}"))
def others_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, status: int) -> None:
    (result,) = paced_results.values()
    others = {s: n for s, n in result.statuses().items() if s != 200}
    evidence.record("not_admitted", others)
    assert set(others) <= {status}, result.statuses()


@then(parsers.parse('some requests from "{name}" are answered {status:d}'))
def some_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"statuses_{name}", result.statuses())
    assert result.count(status) > 0, result.statuses()


@then(parsers.parse('no request from "{name}" is answered {status:d}'))
def none_answered(paced_results: dict[str, PacedResult], evidence: ScenarioEvidence, name: str, status: int) -> None:
    result = paced_results[name]
    evidence.record(f"statuses_{name}", result.statuses())
    assert result.count(status) == 0, result.statuses()
    assert result.count(200) == len(result.sent), result.statuses()
