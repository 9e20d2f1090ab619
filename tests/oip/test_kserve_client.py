"""KServe's own Python REST client (``kserve``, a test-only dependency in ``.venv-kserve``: its pins need not
agree with the project's) against real service processes, one a model: readiness, model metadata and
inference over the Open Inference Protocol, the image sent as base64 JSON and by the binary extension.

The client runs as a subprocess under ``.venv-kserve/bin/python`` (``tests/oip/kserve_client.py``); without
that venv the test is skipped, unless ``OCR_REQUIRE_KSERVE=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.acceptance.components import Endpoint, start_service
from harness.provisioning import samples
from harness.provisioning.samples import document, encode

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("kserve_client.py")
KSERVE_PYTHON = Path(os.environ.get("OCR_KSERVE_PYTHON", ROOT / ".venv-kserve" / "bin" / "python"))
CLIENT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    if not KSERVE_PYTHON.exists():
        message = (
            f"{KSERVE_PYTHON} missing: python3 -m venv .venv-kserve"
            " && .venv-kserve/bin/pip install -r tests/oip/requirements.txt"
        )
        if os.environ.get("OCR_REQUIRE_KSERVE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return KSERVE_PYTHON


@pytest.fixture(scope="module", params=["ocr", "layout", "table"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Endpoint]]:
    kind = request.param
    endpoint = start_service(tmp_path_factory.mktemp("oip"), name=f"service-oip-{kind}", env={"OCR_MODEL": kind})
    yield kind, endpoint
    endpoint.process.stop()


def run_client(python: Path, url: str, model: str, image: Path) -> dict[str, object]:
    done = subprocess.run(
        [str(python), str(CLIENT), url, model, str(image)],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"the KServe client failed ({done.returncode}):\n{done.stderr[-4000:]}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_kserve_client(kserve_python: Path, served: tuple[str, Endpoint], tmp_path: Path) -> None:
    kind, endpoint = served
    page = document(7)
    image = tmp_path / "page.png"
    table = samples.table(7, rows=3, columns=3)
    pictures = {"ocr": page.image, "layout": samples.layout_page(7), "table": table.image}
    image.write_bytes(encode(pictures[kind]))
    model = {"ocr": "pp-ocr", "layout": "layout", "table": "table"}[kind]

    seen = run_client(kserve_python, endpoint.url, model, image)

    assert seen["server_live"] is True
    assert seen["server_ready"] is True
    assert seen["model_ready"] is True
    assert seen["other_model_ready"] is False
    metadata = seen["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["name"] == model
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [1]}]
    served_version = endpoint_version(endpoint)
    assert metadata["versions"] == [served_version]
    declared = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    for way in ("json", "binary"):
        answer = seen[way]
        assert isinstance(answer, dict)
        assert answer["id"] == f"kserve-{way}"
        assert answer["model_name"] == model
        outputs = answer["outputs"]
        assert {name: o["datatype"] for name, o in outputs.items()} == declared, way
        if kind == "table":  # what the client decodes, not the model's accuracy (the benchmark's TEDS)
            (html,) = outputs["html"]["data"]
            texts = outputs["texts"]["data"]
            assert html.startswith("<table><tr>") and all(c.text in texts for c in table.cells), (way, html)
            assert outputs["cells"]["shape"] == [len(texts), 8] == [len(outputs["scores"]["data"]), 8], way
            continue
        boxes = outputs["boxes"]
        assert boxes["shape"][1:] == [4] and boxes["shape"][0] >= 1, way
        if kind == "ocr":
            text = outputs["text"]["data"][0]
            assert page.lines[0].split()[0] in text, (way, text)
            assert boxes["shape"][0] == len(outputs["box_text"]["data"])
        else:
            labels = outputs["labels"]["data"]
            assert "text" in labels, (way, labels)
            assert len(labels) == boxes["shape"][0] == len(outputs["scores"]["data"])
    assert seen["json"]["outputs"] == seen["binary"]["outputs"]  # type: ignore[index]


def endpoint_version(endpoint: Endpoint) -> str:
    import httpx

    version: str = httpx.get(f"{endpoint.url}/readyz", timeout=10).json()["model"]["version"]
    return version
