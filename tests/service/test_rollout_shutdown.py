"""What a rollout relies on, on a real service process: the version label it reports everywhere, and a
SIGTERM that turns readiness 503 while the process keeps serving (closing kept-alive connections) for the
drain pause, then exits 0."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import httpx

from harness import wait
from harness.acceptance.components import start_service
from harness.provisioning import samples

DRAIN_S = 3.0


def _predict(client: httpx.Client, url: str, text: str) -> httpx.Response:
    return client.post(f"{url}/predict", files={"file": ("a.png", samples.text_line(text).encode())}, timeout=60)


def test_sigterm_drains_and_every_answer_names_the_labelled_version(tmp_path: Path) -> None:
    endpoint = start_service(
        tmp_path,
        name="service-rollout",
        env={"OCR_SHUTDOWN_DRAIN_S": str(DRAIN_S), "OCR_MODEL_VERSION": "v7"},
    )
    url = endpoint.url
    try:
        with httpx.Client() as client:  # one kept-alive connection, as a gateway's pool holds
            before = _predict(client, url, "Before")
            assert before.status_code == 200 and before.json()["text"] == "Before"
            model = before.json()["model"]
            assert model["version"] == "v7"
            assert re.fullmatch(r"[0-9a-f]{64}", model["digest"]), model
            assert "close" not in before.headers.get("connection", "")
            info = next(x for x in client.get(f"{url}/metrics").text.splitlines() if x.startswith("ocr_model_info{"))
            assert 'version="v7"' in info and f'digest="{model["digest"]}"' in info, info

            endpoint.process.signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait.until(
                lambda: client.get(f"{url}/readyz").status_code, lambda s: s == 503, timeout=2, interval=0.05,
                what="/readyz 503 after SIGTERM",
            )  # fmt: skip
            if "/v2/health/ready" in client.get(f"{url}/openapi.json").json()["paths"]:
                assert client.get(f"{url}/v2/health/ready").status_code == 503  # the Open Inference Protocol's
            during = _predict(client, url, "Draining")
            # Served during the drain, and told to close: the client's next request opens a new connection
            # (to a ready replica) instead of landing on one this process is about to close.
            assert during.status_code == 200 and during.json()["text"] == "Draining"
            assert during.json()["model"]["version"] == "v7"
            assert during.headers.get("connection") == "close"
        assert endpoint.process.wait_exit(timeout=30) == 0
        assert time.monotonic() - signalled >= DRAIN_S - 0.2  # it did not leave before the drain pause ended
    finally:
        endpoint.process.stop()
    lines = [json.loads(x) for x in endpoint.process.log_text().splitlines() if x.startswith("{")]
    after_load = lines[next(i for i, x in enumerate(lines) if x.get("message") == "model ready") :]
    assert after_load and all(x.get("model_version") == "v7" for x in after_load), after_load[:3]
    assert all(x.get("model_digest") == model["digest"] for x in after_load)
    assert any("draining" in x.get("message", "") for x in after_load)
