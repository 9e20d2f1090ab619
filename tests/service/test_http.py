"""The API over real HTTP: a real uvicorn process on loopback, the real model."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import wait
from harness.acceptance.components import Endpoint
from harness.acceptance.textmetrics import cer
from harness.provisioning import samples


def post_image(endpoint: Endpoint, data: bytes, *, filename: str = "image.png", headers: dict | None = None, **kw):
    return httpx.post(
        f"{endpoint.url}/predict", files={"file": (filename, data)}, headers=headers or {}, timeout=60, **kw
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def test_health_and_readiness(service: Endpoint) -> None:
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok", "model": None, "detail": None}
    ready = httpx.get(f"{service.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"]["name"] == "pp-ocr"


def test_predict_contract(service: Endpoint) -> None:
    sample = samples.text_line("Invoice 2024 total")
    response = post_image(service, sample.encode(), headers={"X-Request-ID": "req-contract-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "text", "confidence", "latency_ms", "boxes", "model"}
    assert body["request_id"] == "req-contract-1" == response.headers["x-request-id"]
    assert body["text"] == "Invoice 2024 total"
    assert 0.0 < body["confidence"] <= 1.0
    assert body["latency_ms"] > 0
    assert body["model"]["version"]
    width, height = sample.image.size
    assert body["boxes"], body
    for box in body["boxes"]:
        assert set(box) == {"x1", "y1", "x2", "y2", "text", "conf"}
        assert all(isinstance(box[k], int) for k in ("x1", "y1", "x2", "y2"))
        assert 0 <= box["x1"] < box["x2"] <= width and 0 <= box["y1"] < box["y2"] <= height


def test_page_is_read_in_reading_order(service: Endpoint) -> None:
    page = samples.document(seed=7, lines=6)
    body = post_image(service, page.encode()).json()
    assert cer(body["text"], page.text) <= 0.02, (body["text"], page.text)
    tops = [b["y1"] for b in body["boxes"]]
    assert tops == sorted(tops)


def test_blank_image_reads_nothing(service: Endpoint) -> None:
    blank = samples.encode(samples.Image.new("RGB", (200, 80), "white"))
    body = post_image(service, blank).json()
    assert body["text"] == "" and body["boxes"] == [] and body["confidence"] == 0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP"])
def test_supported_formats(service: Endpoint, fmt: str) -> None:
    sample = samples.text_line("Format check")
    response = post_image(service, sample.encode(fmt), filename=f"image.{fmt.lower()}")
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "Format check"


def test_exif_orientation_is_applied(service: Endpoint) -> None:
    sample = samples.text_line("Rotated receipt")
    body = post_image(service, samples.with_exif_rotation(sample), filename="photo.jpg").json()
    assert body["text"] == "Rotated receipt"
    width, height = sample.image.size  # the upright frame a viewer shows
    for box in body["boxes"]:
        assert box["x2"] <= width and box["y2"] <= height


BAD_INPUTS = {
    "not an image": (samples.not_an_image, 415, "unsupported_media_type"),
    "gif": (samples.gif_image, 415, "unsupported_media_type"),
    "truncated png": (samples.truncated_png, 400, "invalid_image"),
    "empty file": (lambda: b"", 400, "invalid_image"),
    "too many pixels": (lambda: samples.too_many_pixels(40_000_000), 413, "image_too_large"),
    "decompression bomb": (samples.decompression_bomb, 413, "image_too_large"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_images_are_refused_and_service_stays_healthy(service: Endpoint, case: str) -> None:
    make, status, code = BAD_INPUTS[case]
    assert_error(post_image(service, make()), status, code)
    assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_upload_over_limit_refused_from_content_length(service: Endpoint) -> None:
    response = post_image(service, b"\0" * (10 * 1024 * 1024 + 1))
    error = assert_error(response, 413, "payload_too_large")
    assert "10485760" in error["message"]


def test_chunked_upload_over_limit_is_cut_off(service: Endpoint) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():  # no Content-Length: the limit must be enforced as the bytes arrive
        yield head
        for _ in range(12):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{service.url}/predict",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert_error(response, 413, "payload_too_large")


def test_missing_file_field_names_the_field(service: Endpoint) -> None:
    response = httpx.post(f"{service.url}/predict", data={"image": "x"}, timeout=30)
    error = assert_error(response, 422, "validation_error")
    assert "file" in error["message"]


def test_unknown_route_and_method(service: Endpoint) -> None:
    assert_error(httpx.get(f"{service.url}/nope"), 404, "not_found")
    assert_error(httpx.get(f"{service.url}/predict"), 405, "method_not_allowed")


def test_invalid_tenant_is_refused(service: Endpoint) -> None:
    response = post_image(service, samples.text_line("Tenant").encode(), headers={"X-Tenant-ID": "team a!"})
    assert_error(response, 400, "invalid_tenant")
    too_long = post_image(service, samples.text_line("Tenant").encode(), headers={"X-Tenant-ID": "t" * 65})
    assert_error(too_long, 400, "invalid_tenant")


def _metric(text: str, metric: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == metric and all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return 0.0


def test_metrics_count_requests_and_rejections(service: Endpoint) -> None:
    before = httpx.get(f"{service.url}/metrics").text
    post_image(service, samples.text_line("Metric").encode())
    post_image(service, samples.not_an_image())
    after = httpx.get(f"{service.url}/metrics").text
    ok = dict(route="/predict", method="POST", status="200")
    assert _metric(after, "ocr_http_requests_total", **ok) == _metric(before, "ocr_http_requests_total", **ok) + 1
    bad = dict(reason="bad_image")
    assert _metric(after, "ocr_rejections_total", **bad) == _metric(before, "ocr_rejections_total", **bad) + 1
    inferences = "ocr_inference_duration_seconds_count"
    assert _metric(after, inferences) > _metric(before, inferences)
    assert _metric(after, "ocr_request_payload_bytes_count", route="/predict") >= 2
    assert _metric(after, "ocr_model_info", name="pp-ocr") == 1
    assert _metric(after, "ocr_ready") == 1
    assert "ocr_http_request_duration_seconds_bucket" in after
    assert "ocr_http_requests_in_flight" in after


def test_openapi_documents_errors(service: Endpoint) -> None:
    spec = httpx.get(f"{service.url}/openapi.json").json()
    responses = spec["paths"]["/predict"]["post"]["responses"]
    for status in ("200", "400", "413", "415", "422", "503", "504"):
        assert status in responses, status
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"/healthz", "/readyz", "/metrics", "/predict"} <= set(spec["paths"])
    assert httpx.get(f"{service.url}/docs").status_code == 200


def logged(endpoint: Endpoint, needle: str) -> list[dict]:
    """The service's JSON log lines containing ``needle``; the line is written just after the response."""

    def lines() -> list[dict]:
        return [json.loads(x) for x in endpoint.process.log_text().splitlines() if needle in x]

    return wait.until(lines, bool, timeout=5, interval=0.05, what=f"a log line with {needle}").last or []


def test_log_line_per_request(service: Endpoint) -> None:
    headers = {"X-Request-ID": "log-check-42", "X-Tenant-ID": "team-a", "x-api-key": "sekret-key-value"}
    data = samples.text_line("Logged").encode()
    post_image(service, data, headers=headers)
    lines = logged(service, "log-check-42")
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["request_id"] == "log-check-42"
    assert line["tenant_id"] == "team-a"
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status_code"] == 200
    assert line["latency_ms"] > 0
    assert line["payload_size"] >= len(data)
    assert line["model_version"]
    assert line["timestamp"] and line["level"] == "info"
    assert "sekret-key-value" not in service.process.log_text()


def test_error_is_logged_with_request_id(service: Endpoint) -> None:
    post_image(service, samples.not_an_image(), headers={"X-Request-ID": "bad-image-7"})
    lines = logged(service, "bad-image-7")
    assert lines and lines[0]["status_code"] == 415 and lines[0]["error_code"] == "unsupported_media_type"


def test_overload_answers_503_with_retry_after(tight_service: Endpoint) -> None:
    page = samples.document(seed=3, lines=20).encode()
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post_image(tight_service, page), range(4)))
    overloaded = [r for r in responses if r.status_code == 503]
    assert overloaded, [r.status_code for r in responses]
    for response in overloaded:
        assert_error(response, 503, "overloaded")
        assert int(response.headers["retry-after"]) >= 1


def test_inference_over_deadline_answers_504(tight_service: Endpoint) -> None:
    def admitted() -> float:
        return _metric(httpx.get(f"{tight_service.url}/metrics").text, "ocr_http_requests_in_flight")

    # Wait for the slot to be free (the overload test may still hold it), then send one slow page.
    wait.until(admitted, lambda n: n <= 1, timeout=30, what="no request in flight")
    wait.until(
        lambda: post_image(tight_service, samples.text_line("free").encode()).status_code,
        lambda s: s in (200, 504),
        timeout=30,
        what="a free model slot",
    )
    response = post_image(tight_service, samples.document(seed=4, lines=20).encode())
    assert_error(response, 504, "inference_timeout")
    assert httpx.get(f"{tight_service.url}/healthz").status_code == 200
