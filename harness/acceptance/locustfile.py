"""The locust user of the platform's load steps; configured through environment variables.

LOAD_IMAGE: ``small`` (one word, cheap: gateway checks) or ``page`` (a document page: scaling checks).
LOAD_API_KEY: sent as ``x-api-key`` when set. LOAD_HOST_HEADER: a Host header for gateway routing.
Runs only inside ``python -m locust``; never import this module elsewhere.
"""

from __future__ import annotations

import os

from locust import HttpUser, constant, task

from harness.provisioning import samples

_KIND = os.environ.get("LOAD_IMAGE", "small")
_IMAGE = (samples.document(seed=42, lines=8) if _KIND == "page" else samples.words_image(seed=42)).encode()
_HEADERS = {
    k: v for k, v in (("x-api-key", os.environ.get("LOAD_API_KEY")), ("host", os.environ.get("LOAD_HOST_HEADER"))) if v
}


class OcrClient(HttpUser):
    wait_time = constant(float(os.environ.get("LOAD_WAIT_S", "0")))

    @task
    def predict(self) -> None:
        self.client.post("/predict", files={"file": ("load.png", _IMAGE)}, headers=_HEADERS, name="/predict")
