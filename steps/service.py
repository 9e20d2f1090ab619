"""Steps about the OCR service itself: health, the /predict contract, bad input, logs, counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pytest_bdd import given, parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.targets import Target, log_events
from harness.provisioning import samples
from steps.common import eventually, image_reading, post_image

BAD_INPUTS: dict[str, Callable[[], dict[str, Any]]] = {
    "a file that is not an image": lambda: {"files": {"file": ("doc.pdf", samples.not_an_image())}},
    "a GIF image": lambda: {"files": {"file": ("a.gif", samples.gif_image())}},
    "a truncated PNG": lambda: {"files": {"file": ("a.png", samples.truncated_png())}},
    "an image over 40 megapixels": lambda: {"files": {"file": ("big.png", samples.too_many_pixels(40_000_000))}},
    "a decompression bomb": lambda: {"files": {"file": ("bomb.png", samples.decompression_bomb())}},
    "an upload over 10 MiB": lambda: {"files": {"file": ("huge.png", b"\0" * (10 * 1024 * 1024 + 1))}},
    "a form without the file field": lambda: {"data": {"picture": "nothing here"}},
}


def predict_count(client: httpx.Client, target: Target) -> float:
    text = client.get(f"{target.service_url()}/metrics").text
    for line in text.splitlines():
        if line.startswith("ocr_http_requests_total{") and 'route="/predict"' in line and 'status="200"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@when("a client asks the service whether it is alive and ready")
def asks_health(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence) -> None:
    ctx["healthz"] = client.get(f"{target.service_url()}/healthz")
    evidence.record("healthz", {"status": ctx["healthz"].status_code, "body": ctx["healthz"].text[:200]})


@then(parsers.parse("/healthz answers {status:d}"))
def healthz_answers(ctx: dict, status: int) -> None:
    response: httpx.Response = ctx["healthz"]
    assert response.status_code == status, response.text[:200]


@then(parsers.parse("/readyz answers {status:d} and names the model"))
def readyz_names_model(target: Target, client: httpx.Client, evidence: ScenarioEvidence, status: int) -> None:
    response = client.get(f"{target.service_url()}/readyz")
    body = response.json()
    evidence.record("readyz", {"status": response.status_code, "model": body.get("model")})
    assert response.status_code == status, body
    assert body["model"]["name"] and body["model"]["version"], body


@when(parsers.parse('a client sends an image reading "{text}" with request id "{request_id}"'))
def send_known_image_with_id(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, text: str, request_id: str
) -> None:
    sample = image_reading(text)
    ctx["sample"] = sample
    ctx["response"] = post_image(client, target.service_url(), sample.encode(), headers={"X-Request-ID": request_id})
    evidence.record("request", {"text": text, "request_id": request_id, "status": ctx["response"].status_code})


@when(parsers.parse('a client sends an image reading "{text}"'))
def send_known_image(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, text: str) -> None:
    ctx["sample"] = image_reading(text)
    ctx["response"] = post_image(client, target.service_url(), ctx["sample"].encode())
    evidence.record("request", {"text": text, "status": ctx["response"].status_code})


@when(parsers.parse('tenant "{tenant}" sends an image reading "{text}" with request id "{request_id}"'))
def tenant_sends(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, tenant: str, text: str, request_id: str
) -> None:
    ctx["sample"] = image_reading(text)
    headers = {"X-Request-ID": request_id, "X-Tenant-ID": tenant}
    ctx["response"] = post_image(client, target.service_url(), ctx["sample"].encode(), headers=headers)
    ctx["payload_size"] = len(ctx["sample"].encode())
    evidence.record("request", {"tenant": tenant, "request_id": request_id, "status": ctx["response"].status_code})


@when(parsers.parse("a client sends {kind} to /predict"))
def send_bad_input(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, kind: str) -> None:
    assert kind in BAD_INPUTS, f"unknown bad input {kind!r}; known: {sorted(BAD_INPUTS)}"
    ctx["response"] = client.post(f"{target.service_url()}/predict", **BAD_INPUTS[kind]())
    evidence.record("bad_input", {"kind": kind, "status": ctx["response"].status_code, "body": ctx["response"].text})


@then(parsers.parse("the response is {status:d}"))
def response_status(ctx: dict, evidence: ScenarioEvidence, status: int) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("status", response.status_code)
    assert response.status_code == status, response.text


@then(parsers.parse('the response is {status:d} with the error code "{code}"'))
def response_error(ctx: dict, evidence: ScenarioEvidence, status: int, code: str) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("error_response", {"status": response.status_code, "body": response.text})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error


@then("the error names the request id")
def error_names_request_id(ctx: dict, evidence: ScenarioEvidence) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record("error_request_id", [response.json()["error"]["request_id"], response.headers["x-request-id"]])
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


@then(parsers.parse('the text read is "{text}"'))
def text_read(ctx: dict, evidence: ScenarioEvidence, text: str) -> None:
    body = ctx["response"].json()
    evidence.record("text_read", body["text"])
    assert body["text"] == text, body


@then("every box lies inside the image")
def boxes_inside(ctx: dict, evidence: ScenarioEvidence) -> None:
    width, height = ctx["sample"].image.size
    boxes = ctx["response"].json()["boxes"]
    evidence.record("boxes", {"image": [width, height], "boxes": boxes})
    assert boxes, "no boxes"
    for b in boxes:
        assert 0 <= b["x1"] < b["x2"] <= width and 0 <= b["y1"] < b["y2"] <= height, b


@then(parsers.parse("the confidence is between {low:g} and {high:g}"))
def confidence_between(ctx: dict, evidence: ScenarioEvidence, low: float, high: float) -> None:
    confidence = ctx["response"].json()["confidence"]
    evidence.record("confidence", confidence)
    assert low <= confidence <= high


@then(parsers.parse("the reported latency is above {ms:g} ms"))
def latency_above(ctx: dict, evidence: ScenarioEvidence, ms: float) -> None:
    latency = ctx["response"].json()["latency_ms"]
    evidence.record("latency_ms", latency)
    assert latency > ms


@then(parsers.parse('the request id "{request_id}" is echoed in the body and in the X-Request-ID header'))
def request_id_echoed(ctx: dict, evidence: ScenarioEvidence, request_id: str) -> None:
    response: httpx.Response = ctx["response"]
    evidence.record(
        "request_id_echo", {"body": response.json()["request_id"], "header": response.headers["x-request-id"]}
    )
    assert response.json()["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id


@given("the count of successful /predict requests in /metrics", target_fixture="predict_count_before")
def count_before(target: Target, client: httpx.Client, evidence: ScenarioEvidence) -> float:
    value = predict_count(client, target)
    evidence.record("predict_count_before", value)
    return value


@then(parsers.parse("the count of successful /predict requests in /metrics has grown by {n:d}"))
def count_grown(
    target: Target, client: httpx.Client, evidence: ScenarioEvidence, predict_count_before: float, n: int
) -> None:
    after = predict_count(client, target)
    evidence.record("predict_count_after", after)
    assert after == predict_count_before + n, (predict_count_before, after)


@then(
    parsers.parse('the service logs one line for request "{request_id}" with tenant "{tenant}" and status {status:d}')
)
def logged_line(
    target: Target, ctx: dict, evidence: ScenarioEvidence, request_id: str, tenant: str, status: int
) -> None:
    def lines() -> list[dict]:
        return [e for e in log_events(target, "service") if e.get("request_id") == request_id]

    found = eventually(evidence, f"log line for {request_id}", lines, lambda ls: len(ls) >= 1, seconds=10)
    evidence.record("log_lines", found)
    assert len(found) == 1, found
    line = found[0]
    assert (line["tenant_id"], line["status_code"]) == (tenant, status), line
    ctx["log_line"] = line


@then("that log line carries a latency in ms and the payload size")
def log_line_fields(ctx: dict, evidence: ScenarioEvidence) -> None:
    line = ctx["log_line"]
    evidence.record("log_line_checked", {k: line.get(k) for k in ("latency_ms", "payload_size", "model_version")})
    assert line["latency_ms"] > 0, line
    assert line["payload_size"] >= ctx["payload_size"], line
    for key in ("timestamp", "level", "method", "path", "model_version"):
        assert line.get(key), (key, line)
