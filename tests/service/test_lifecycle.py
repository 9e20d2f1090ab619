"""Start-up and shutdown of real service processes: bad settings, missing models, SIGTERM draining."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from harness import wait
from harness.acceptance.components import start_service
from harness.processes import ProcessExited
from harness.provisioning import samples
from service.models.ocr import ModelFiles


def run_service(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        env={"PATH": "/usr/bin:/bin", "OCR_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bad_setting_stops_startup_naming_the_variable() -> None:
    result = run_service({"OCR_MAX_PIXELS": "-5"})
    assert result.returncode == 2
    assert "OCR_MAX_PIXELS" in result.stderr


def test_a_taken_port_stops_startup_saying_so_with_its_own_exit_code() -> None:
    """It exited 3, which the settings document as "model file unusable"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_service({"OCR_HOST": "127.0.0.1", "OCR_PORT": str(port)})
    assert result.returncode == 4, result.stderr[-2000:]
    assert f"port {port} on 127.0.0.1 is taken by another process; OCR_PORT chooses another" in result.stderr


def test_unknown_model_dir_stops_startup() -> None:
    result = run_service({"OCR_MODEL_DIR": "/nonexistent/models"})
    assert result.returncode == 2
    assert "OCR_MODEL_DIR" in result.stderr


def test_incomplete_model_dir_names_the_missing_file(tmp_path: Path) -> None:
    bundled = ModelFiles.bundled()
    shutil.copy(bundled.det, tmp_path / "det.onnx")
    shutil.copy(bundled.cls, tmp_path / "cls.onnx")
    result = run_service({"OCR_MODEL_DIR": str(tmp_path)})
    assert result.returncode == 3
    assert "rec.onnx" in result.stderr


def test_model_dir_serves_like_the_bundled_model(tmp_path: Path) -> None:
    bundled = ModelFiles.bundled()
    for role in ("det", "rec", "cls"):
        (tmp_path / f"{role}.onnx").symlink_to(getattr(bundled, role))
    endpoint = start_service(tmp_path / "logs", name="service-model-dir", env={"OCR_MODEL_DIR": str(tmp_path)})
    try:
        sample = samples.text_line("Mounted model")
        response = httpx.post(f"{endpoint.url}/predict", files={"file": ("a.png", sample.encode())}, timeout=60)
        assert response.json()["text"] == "Mounted model"
    finally:
        assert endpoint.process.stop() == 0


def test_model_that_fails_to_load_stops_the_process(tmp_path: Path) -> None:
    bundled = ModelFiles.bundled()
    (tmp_path / "det.onnx").write_bytes(b"not an onnx graph")
    shutil.copy(bundled.rec, tmp_path / "rec.onnx")
    shutil.copy(bundled.cls, tmp_path / "cls.onnx")
    with pytest.raises(ProcessExited) as info:
        start_service(tmp_path / "logs", name="service-broken-model", env={"OCR_MODEL_DIR": str(tmp_path)})
    assert info.value.returncode == 3
    assert "det.onnx" in str(info.value)


def test_sigterm_flips_readiness_and_finishes_in_flight_requests(tmp_path: Path) -> None:
    endpoint = start_service(tmp_path, name="service-sigterm", env={"OCR_SHUTDOWN_DRAIN_S": "3"})
    page = samples.document(seed=11, lines=24).encode()
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = httpx.post(f"{endpoint.url}/predict", files={"file": ("p.png", page)}, timeout=60)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    def in_flight() -> float:
        text = httpx.get(f"{endpoint.url}/metrics").text
        return next(float(x.split()[-1]) for x in text.splitlines() if x.startswith("ocr_http_requests_in_flight "))

    client = threading.Thread(target=slow_request)
    client.start()
    # The /metrics request itself counts one.
    wait.until(in_flight, lambda n: n >= 2, timeout=20, interval=0.05, what="the page request in flight")
    endpoint.process.signal(signal.SIGTERM)
    wait.until(
        lambda: httpx.get(f"{endpoint.url}/readyz").status_code,
        lambda s: s == 503,
        timeout=3,
        interval=0.1,
        what="/readyz 503 after SIGTERM",
    )
    assert httpx.get(f"{endpoint.url}/healthz").status_code == 200  # alive while draining
    client.join(timeout=60)
    assert "error" not in outcome, outcome
    response = outcome["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert response.json()["text"]
    assert endpoint.process.wait_exit(timeout=30) == 0


def test_requests_arriving_during_the_drain_are_still_served(tmp_path: Path) -> None:
    endpoint = start_service(tmp_path, name="service-drain", env={"OCR_SHUTDOWN_DRAIN_S": "4"})
    endpoint.process.signal(signal.SIGTERM)
    wait.until(
        lambda: httpx.get(f"{endpoint.url}/readyz").status_code, lambda s: s == 503, timeout=3, interval=0.1,
        what="/readyz 503 after SIGTERM",
    )  # fmt: skip
    response = httpx.post(
        f"{endpoint.url}/predict", files={"file": ("a.png", samples.text_line("Draining").encode())}, timeout=30
    )
    assert response.status_code == 200 and response.json()["text"] == "Draining"
    assert endpoint.process.wait_exit(timeout=30) == 0


def test_readiness_is_503_until_the_model_is_warm(tmp_path: Path) -> None:
    import subprocess
    import sys

    from harness.ports import free_port

    port = free_port()
    log = (tmp_path / "service.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env={**__import__("os").environ, "OCR_HOST": "127.0.0.1", "OCR_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen: list[int] = []

    def readyz() -> int:
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
        except httpx.HTTPError:
            return 0
        seen.append(status)
        return status

    try:
        wait.until(readyz, lambda s: s == 200, timeout=60, interval=0.02, what="/readyz 200")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    # The port opens before the model is loaded: /readyz said 503 first, then 200, never back.
    assert seen[0] == 503, seen[:5]
    first_ok = seen.index(200)
    assert all(s == 503 for s in seen[:first_ok]) and seen[-1] == 200


def test_healthz_answers_while_a_page_is_being_read(tmp_path: Path) -> None:
    endpoint = start_service(tmp_path, name="service-busy")
    page = samples.document(seed=21, lines=30, width=1240).encode()

    def in_flight() -> float:
        text = httpx.get(f"{endpoint.url}/metrics").text
        return next(float(x.split()[-1]) for x in text.splitlines() if x.startswith("ocr_http_requests_in_flight "))

    client = threading.Thread(
        target=lambda: httpx.post(f"{endpoint.url}/predict", files={"file": ("p.png", page)}, timeout=60)
    )
    try:
        client.start()
        wait.until(in_flight, lambda n: n >= 2, timeout=20, interval=0.05, what="the page request in flight")
        assert httpx.get(f"{endpoint.url}/healthz", timeout=5).status_code == 200
        # Still in flight after /healthz answered: the event loop was not blocked by the model.
        assert in_flight() >= 2
    finally:
        client.join(timeout=60)
        endpoint.process.stop()
