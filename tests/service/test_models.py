"""Models as plugins (``service.models``) and the Open Inference Protocol (``service.api.routes.v2``), over real
HTTP: real service processes on loopback with the real models. The KServe client's own test is in
``tests/oip``."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from harness.acceptance.components import Endpoint, start_service
from harness.provisioning import samples
from service.settings import ENV_PREFIX
from tests.service.test_http import _metric, logged

LAYOUT_PAGE = samples.encode(samples.layout_page(seed=3))


@pytest.fixture(scope="module")
def layout_service(logs_dir: Path) -> Iterator[Endpoint]:
    endpoint = start_service(logs_dir, name="service-layout", env={"OCR_MODEL": "layout"})
    yield endpoint
    endpoint.process.stop()


@pytest.fixture(scope="module")
def tight_layout(logs_dir: Path) -> Iterator[Endpoint]:
    """The layout model with one slot, no waiting line and a short deadline."""
    env = {"OCR_MODEL": "layout", "OCR_MAX_CONCURRENCY": "1", "OCR_MAX_QUEUE": "0", "OCR_REQUEST_TIMEOUT_S": "0.2"}
    endpoint = start_service(logs_dir, name="service-layout-tight", env=env)
    yield endpoint
    endpoint.process.stop()


def infer_body(image: bytes, **extra: object) -> dict[str, object]:
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}
    return {"inputs": [tensor], **extra}


def infer(endpoint: Endpoint, model: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{endpoint.url}/v2/models/{model}/infer", json=body, timeout=60, **kw)  # type: ignore[arg-type]


def oip_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


# -- the layout model through /predict --------------------------------------------------------------


def test_layout_predict_contract(layout_service: Endpoint) -> None:
    response = httpx.post(
        f"{layout_service.url}/predict",
        files={"file": ("page.png", LAYOUT_PAGE)},
        headers={"X-Request-ID": "layout-1"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "latency_ms", "regions", "model"}
    assert body["request_id"] == "layout-1" and body["latency_ms"] > 0
    labels = {r["label"] for r in body["regions"]}
    assert {"title", "text", "figure"} <= labels, body["regions"]
    width, height = samples.layout_page(seed=3).size
    for region in body["regions"]:
        assert set(region) == {"x1", "y1", "x2", "y2", "label", "conf"}
        assert 0 <= region["x1"] < region["x2"] <= width and 0 <= region["y1"] < region["y2"] <= height, region
        assert 0.5 <= region["conf"] <= 1
    ys = [r["y1"] for r in body["regions"]]
    assert ys == sorted(ys)
    title = min(body["regions"], key=lambda r: r["y1"])
    assert title["label"] == "title"
    model = body["model"]
    assert model["name"] == "layout" and model["version"].startswith("1.2.1+")
    metrics = httpx.get(f"{layout_service.url}/metrics").text
    assert _metric(metrics, "ocr_model_info", name="layout", kind="layout", version=model["version"]) == 1


def test_layout_boxes_are_in_the_frame_of_the_image_sent(layout_service: Endpoint) -> None:
    """A page decoded smaller than sent (a large JPEG) gets its regions in the frame it was sent in."""
    big = samples.layout_page(seed=3).resize((2480, 3508))
    response = httpx.post(
        f"{layout_service.url}/predict", files={"file": ("p.jpg", samples.encode(big, "JPEG"))}, timeout=60
    )
    assert response.status_code == 200, response.text
    regions = response.json()["regions"]
    assert regions and max(r["x2"] for r in regions) > 1240, regions
    assert all(r["x2"] <= 2480 and r["y2"] <= 3508 for r in regions)


@pytest.mark.parametrize(
    "data, status, code",
    [
        (samples.not_an_image(), 415, "unsupported_media_type"),
        (samples.truncated_png(), 400, "invalid_image"),
        (samples.too_many_pixels(40_000_000), 413, "image_too_large"),
    ],
    ids=["not-an-image", "truncated", "too-many-pixels"],
)
def test_layout_refuses_bad_input_as_ocr_does(layout_service: Endpoint, data: bytes, status: int, code: str) -> None:
    response = httpx.post(f"{layout_service.url}/predict", files={"file": ("x.png", data)}, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_layout_log_lines_are_json_and_name_the_model(layout_service: Endpoint) -> None:
    httpx.post(
        f"{layout_service.url}/predict",
        files={"file": ("page.png", LAYOUT_PAGE)},
        headers={"X-Request-ID": "layout-logged"},
        timeout=60,
    )
    line = logged(layout_service, "layout-logged")[0]
    assert line["route"] == "/predict" and line["status_code"] == 200
    assert line["model_version"].startswith("1.2.1+")
    text = layout_service.process.log_text()
    assert all(x.startswith("{") for x in text.splitlines() if x.strip()), "a log line that is not JSON"
    ready = [json.loads(x) for x in text.splitlines() if '"model ready"' in x]
    assert ready and ready[0]["model_name"] == "layout"


def test_unknown_model_setting_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        env={"PATH": "/usr/bin:/bin", f"{ENV_PREFIX}MODEL": "tables", f"{ENV_PREFIX}PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "OCR_MODEL" in done.stderr + done.stdout


def test_layout_model_dir_without_its_file_exits_3(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        env={"PATH": "/usr/bin:/bin", "OCR_MODEL": "layout", "OCR_MODEL_DIR": str(tmp_path), "OCR_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert f"{tmp_path}/layout.onnx" in done.stderr + done.stdout


# -- the Open Inference Protocol ------------------------------------------------------------------


def test_health_and_metadata(service: Endpoint, layout_service: Endpoint) -> None:
    for endpoint, name, outputs in (
        (service, "pp-ocr", ["text", "confidence", "boxes", "box_text", "box_conf"]),
        (layout_service, "layout", ["boxes", "labels", "scores"]),
    ):
        assert httpx.get(f"{endpoint.url}/v2/health/live").json() == {"live": True}
        assert httpx.get(f"{endpoint.url}/v2/health/ready").json() == {"ready": True}
        assert httpx.get(f"{endpoint.url}/v2/models/{name}/ready").json() == {"name": name, "ready": True}
        metadata = httpx.get(f"{endpoint.url}/v2/models/{name}").json()
        version = httpx.get(f"{endpoint.url}/readyz").json()["model"]["version"]
        assert metadata["name"] == name and metadata["versions"] == [version]
        assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [1]}]
        assert [o["name"] for o in metadata["outputs"]] == outputs
        versioned = httpx.get(f"{endpoint.url}/v2/models/{name}/versions/{version}")
        assert versioned.json() == metadata
        oip_error(httpx.get(f"{endpoint.url}/v2/models/{name}/versions/0.0.0"), 404)
        oip_error(httpx.get(f"{endpoint.url}/v2/models/other"), 404)
        oip_error(httpx.get(f"{endpoint.url}/v2/models/other/ready"), 404)
        assert httpx.get(f"{endpoint.url}/v2").json()["extensions"] == ["binary_tensor_data"]


def test_ocr_infer(service: Endpoint) -> None:
    sample = samples.text_line("Invoice 2024 total")
    response = infer(service, "pp-ocr", infer_body(sample.encode(), id="oip-1"), headers={"X-Request-ID": "rq-oip"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "pp-ocr" and body["id"] == "oip-1"
    assert body["parameters"]["request_id"] == "rq-oip" == response.headers["x-request-id"]
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["text"]["data"] == ["Invoice 2024 total"] and outputs["text"]["shape"] == [1]
    n = len(outputs["box_text"]["data"])
    assert outputs["boxes"]["shape"] == [n, 4] and len(outputs["boxes"]["data"]) == 4 * n
    line = logged(service, "rq-oip")[0]
    assert line["route"] == "/v2/models/{name}/infer" and line["status_code"] == 200 and line["model_version"]


def test_layout_infer_binary_extension_and_requested_outputs(layout_service: Endpoint) -> None:
    """The binary data extension: JSON header, then the element (its 4-byte length, then the image)."""
    header = json.dumps(
        {
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 0}}],
            "outputs": [{"name": "labels"}],
        }
    )
    element = struct.pack("<I", len(LAYOUT_PAGE)) + LAYOUT_PAGE
    header = header.replace('"binary_data_size": 0', f'"binary_data_size": {len(element)}')
    response = httpx.post(
        f"{layout_service.url}/v2/models/layout/infer",
        content=header.encode() + element,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == ["labels"]
    assert {"title", "text", "figure"} <= set(outputs[0]["data"])
    as_json = infer(layout_service, "layout", infer_body(LAYOUT_PAGE)).json()
    assert {o["name"]: o for o in as_json["outputs"]}["labels"]["data"] == outputs[0]["data"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"inputs": []}, "expected one input"),
        ({"nothing": 1}, "inputs"),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "BYTES"),
        ({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}, "shape"),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}, "base64"),
        ({"inputs": [{"name": "image", "shape": [], "datatype": "BYTES", "data": ["aGk="]}]}, "shape"),
        (
            {"inputs": [{"name": "image", "shape": [1] * 100_000, "datatype": "BYTES", "data": ["aGk="]}]},
            "(100000 dimensions)",
        ),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [["aGk="]]}]}, "list of one"),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": True},
                        "data": ["aGk="],
                    }
                ]
            },
            "binary_data_size True",
        ),
        (infer_body(b"tiny", outputs=[{"name": "nope"}]), ""),
    ],
    ids=[
        "no-input",
        "no-inputs-field",
        "not-bytes",
        "two-images",
        "not-base64",
        "no-shape",
        "100000-ones",
        "nested-data",
        "size-true",
        "not-an-image",
    ],
)
def test_infer_refuses_bad_requests_in_the_protocols_shape(layout_service: Endpoint, body: dict, fragment: str) -> None:
    before = httpx.get(f"{layout_service.url}/metrics").text
    response = infer(layout_service, "layout", body)
    status = 415 if fragment == "" else 400
    assert fragment in oip_error(response, status)
    after = httpx.get(f"{layout_service.url}/metrics").text
    reason = "bad_image" if status == 415 else "bad_request"
    assert (
        _metric(after, "ocr_rejections_total", reason=reason)
        == _metric(before, "ocr_rejections_total", reason=reason) + 1
    )
    labels = dict(route="/v2/models/{name}/infer", method="POST", status=str(status))
    assert _metric(after, "ocr_http_requests_total", **labels) >= 1


# Header bytes are read as latin-1: b"\xb2" arrives as "²", which str.isdigit() takes and int() refuses.
@pytest.mark.parametrize("length", [b"\xb2", "\u0663".encode(), b"1\xb9", b"99999999999999999999", b"-1", b""])
def test_a_header_length_that_is_not_ascii_digits_is_a_400_in_the_protocols_shape(
    layout_service: Endpoint, length: bytes
) -> None:
    """It was a 500 in the wrong error shape."""
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 4}}]}).encode()  # fmt: skip
    response = httpx.post(
        f"{layout_service.url}/v2/models/layout/infer", content=header + b"abcd", timeout=30,
        headers={b"inference-header-content-length": length, b"content-type": b"application/octet-stream"},
    )  # fmt: skip
    assert "Inference-Header-Content-Length" in oip_error(response, 400)
    assert httpx.get(f"{layout_service.url}/readyz", timeout=10).status_code == 200


def test_infer_unknown_model_and_not_json(layout_service: Endpoint) -> None:
    assert "pp-ocr" in oip_error(infer(layout_service, "pp-ocr", infer_body(LAYOUT_PAGE)), 404)
    response = httpx.post(f"{layout_service.url}/v2/models/layout/infer", content=b"{not json", timeout=30)
    oip_error(response, 400)
    oip_error(httpx.get(f"{layout_service.url}/v2/models/layout/infer"), 405)


def test_infer_same_limits_as_predict(tight_layout: Endpoint) -> None:
    """One slot and no line: concurrent requests are refused 503 with Retry-After; a slow one is 504."""
    body = infer_body(samples.encode(samples.layout_page(seed=5).resize((2480, 3508))))
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: infer(tight_layout, "layout", body), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses, statuses
    for response in responses:
        if response.status_code == 503:
            assert "retry" in oip_error(response, 503).lower() or response.headers.get("retry-after")
            assert int(response.headers["retry-after"]) >= 1
        else:
            oip_error(response, 504)  # 0.2 s is less than one layout inference on a full page


def test_jobs_are_refused_by_a_service_serving_another_model(layout_service: Endpoint) -> None:
    """The job workers run OCR only: a layout service queues no job (404 ``jobs_not_served``)."""
    response = httpx.post(f"{layout_service.url}/jobs", files={"file": ("page.png", LAYOUT_PAGE)}, timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "jobs_not_served"


# -- the table model -------------------------------------------------------------------------------------

TABLE = samples.table(2, rows=4, columns=3)


@pytest.fixture(scope="module")
def table_service(logs_dir: Path) -> Iterator[Endpoint]:
    endpoint = start_service(logs_dir, name="service-table", env={"OCR_MODEL": "table"})
    yield endpoint
    endpoint.process.stop()


def test_table_predict_contract(table_service: Endpoint) -> None:
    response = httpx.post(
        f"{table_service.url}/predict", files={"file": ("table.png", samples.encode(TABLE.image))},
        headers={"X-Request-ID": "table-1"}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "latency_ms", "html", "rows", "columns", "cells", "model"}
    assert body["request_id"] == "table-1" and body["latency_ms"] > 0
    assert body["html"] == TABLE.html and (body["rows"], body["columns"]) == (4, 3)
    assert [c["text"] for c in body["cells"]] == [c.text for c in TABLE.cells]
    assert set(body["cells"][0]) == {"row", "col", "rowspan", "colspan", "x1", "y1", "x2", "y2", "text", "conf"}
    model = body["model"]
    assert model["name"] == "table" and model["version"].startswith("0.3.0+") and len(model["digest"]) == 64
    assert httpx.get(f"{table_service.url}/readyz").json()["model"] == model


def test_a_page_without_text_is_an_empty_table_not_an_error(table_service: Endpoint) -> None:
    blank = samples.encode(Image.new("RGB", (800, 600), "white"))
    response = httpx.post(f"{table_service.url}/predict", files={"file": ("blank.png", blank)}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["html"], body["rows"], body["columns"], body["cells"]) == ("<table></table>", 0, 0, [])


def test_table_refuses_bad_input_and_jobs_as_the_others_do(table_service: Endpoint) -> None:
    bad = httpx.post(f"{table_service.url}/predict", files={"file": ("x.gif", samples.gif_image())}, timeout=30)
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "unsupported_media_type"
    jobs = httpx.post(f"{table_service.url}/jobs", files={"file": ("t.png", samples.encode(TABLE.image))}, timeout=30)
    assert jobs.status_code == 404 and jobs.json()["error"]["code"] == "jobs_not_served"


def test_table_infer(table_service: Endpoint) -> None:
    metadata = httpx.get(f"{table_service.url}/v2/models/table").json()
    assert [o["name"] for o in metadata["outputs"]] == ["html", "cells", "texts", "scores"]
    response = infer(table_service, "table", infer_body(samples.encode(TABLE.image), id="t-1"))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["html"]["data"] == [TABLE.html]
    n = len(TABLE.cells)
    assert outputs["cells"]["shape"] == [n, 8] and outputs["texts"]["data"] == [c.text for c in TABLE.cells]
    assert outputs["cells"]["data"][:4] == [0, 0, 1, 1] and len(outputs["scores"]["data"]) == n
