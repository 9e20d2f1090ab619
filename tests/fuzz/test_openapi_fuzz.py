"""Schemathesis against the OpenAPI document of a real service process on loopback.

The service (with a Redis of its own, so the job routes run their real code) starts as the other HTTP tests
start it; Schemathesis reads ``/openapi.json`` and sends every operation generated requests, valid and
invalid, through its coverage, fuzzing and stateful phases, with a fixed seed and a bounded number of
examples per operation. It passes when no response is a server error (5xx) and every response conforms to
the document: a documented status code, content type, headers and body schema.

``positive_data_acceptance`` is left out: the document can only say the upload is binary, so bytes that are
not an image are schema-valid and are rightly refused (415 or 400, both documented).

Failures accepted for a while are in ``baseline.json``, each with its reason and an expiry date; an expired
entry counts as a failure again. This is its own CI step (``.ci/run``), not part of ``tox -e py``:
``OCR_FUZZ=1 pytest tests/fuzz`` runs it. ``OCR_FUZZ_MAX_EXAMPLES`` and ``OCR_FUZZ_SEED`` change the
bounds; the reports (JUnit XML, NDJSON events, the output) are kept in ``<artifacts>/fuzz/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.acceptance.components import Endpoint, redis_url, start_redis, start_service

pytest.importorskip("schemathesis", reason="schemathesis is not installed (it comes with the dev extra)")

pytestmark = pytest.mark.skipif(
    os.environ.get("OCR_FUZZ") != "1",
    reason="API fuzzing is its own CI step (.ci/run); OCR_FUZZ=1 runs it here",
)

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
MAX_EXAMPLES = int(os.environ.get("OCR_FUZZ_MAX_EXAMPLES", "100"))
SEED = int(os.environ.get("OCR_FUZZ_SEED", "20261127"))
# A hard ceiling for the whole run; at the default bounds it takes well under a minute on 2 cores.
RUN_TIMEOUT_S = 540


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    work = tmp_path_factory.mktemp("fuzz")
    redis_ep = start_redis(work, work / "redis")
    try:
        endpoint = start_service(work, name="service-fuzz", env={"OCR_REDIS_URL": redis_url(redis_ep)})
        try:
            yield endpoint
        finally:
            endpoint.process.stop()
    finally:
        redis_ep.process.stop()


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    return [str(script)] if script.exists() else [shutil.which("schemathesis") or "schemathesis"]


def test_no_server_error_and_every_response_as_documented(api: Endpoint, request: pytest.FixtureRequest) -> None:
    reports = Path(str(request.config.getoption("artifacts", "artifacts"))).resolve() / "fuzz"
    reports.mkdir(parents=True, exist_ok=True)
    argv = [
        *schemathesis_command(), "run", f"{api.url}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--request-timeout", "60", "--generation-database", "none",
        "--baseline", str(BASELINE),
        "--report", "junit,ndjson", "--report-dir", str(reports), "--no-color",
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(argv, cwd=reports, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    elapsed = time.monotonic() - start
    (reports / "schemathesis.txt").write_text(done.stdout + done.stderr)
    print(f"schemathesis: exit {done.returncode} in {elapsed:.1f}s (max examples {MAX_EXAMPLES}, seed {SEED})")
    print(done.stdout[-1500:])
    assert done.returncode == 0, f"schemathesis found failures (reports in {reports}):\n{done.stdout[-12000:]}"
    assert "API Operations" in done.stdout

    # What the service wrote meanwhile: JSON lines only, and no unhandled error behind any answer.
    unhandled = []
    for line in api.process.log_text().splitlines():
        record = json.loads(line)
        if record.get("message") == "unhandled error" or record.get("level") == "critical":
            unhandled.append(record)
    assert not unhandled, unhandled
