"""The local gateway sends requests only to ready replicas: a replica whose /readyz answers 503 leaves the
rotation within a check or two, a slot assigned at run time joins it once ready, and with none ready the
client gets a JSON 503."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import wait
from harness.acceptance import gateway
from harness.acceptance.components import start_authorizer

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
# One key a phase: the gateway admits 10 requests a second per key.
KEYS = {f"team-{n}": f"key-of-team-{n}" for n in "abcd"}


class Replica:
    """An upstream that names itself in each answer and answers /readyz as told."""

    def __init__(self, name: str) -> None:
        self.ready = True
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200 if self.path != "/readyz" or replica.ready else 503
                body = name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replicas() -> Iterator[tuple[Replica, Replica]]:
    pair = (Replica("one"), Replica("two"))
    yield pair
    for replica in pair:
        replica.close()


def test_only_ready_replicas_get_requests(tmp_path: Path, replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    authz = start_authorizer(tmp_path / "logs", tmp_path / "authz", {k: (c, c) for c, k in KEYS.items()})
    started = gateway.start_gateway(
        tmp_path / "logs", tmp_path / "work", upstream=f"http://127.0.0.1:{one.port}",
        authorizer=authz.url, keys=KEYS, slots=2,
    )  # fmt: skip
    try:
        assert started.server_states() == {"ocr-1": "UP", "ocr-2": "MAINT"}
        started.assign(2, "127.0.0.1", two.port)
        wait.until(started.server_states, lambda s: s["ocr-2"] == "UP", timeout=5, interval=0.1, what="slot 2 UP")

        def served_by(team: str, n: int = 8) -> set[str]:
            with httpx.Client(timeout=5) as client:
                headers = {"x-api-key": KEYS[team]}
                return {client.post(f"{started.url}/predict", headers=headers).text for _ in range(n)}

        assert served_by("team-a") == {"one", "two"}
        two.ready = False  # as a replica at SIGTERM: unready, still serving
        wait.until(started.server_states, lambda s: s["ocr-2"] == "DOWN", timeout=2, interval=0.05, what="slot 2 DOWN")
        assert served_by("team-b") == {"one"}
        one.ready = False
        wait.until(started.server_states, lambda s: s["ocr-1"] == "DOWN", timeout=2, interval=0.05, what="slot 1 DOWN")
        answer = httpx.post(
            f"{started.url}/predict", headers={"x-api-key": KEYS["team-c"], "X-Request-ID": "rid-9"}, timeout=5
        )
        assert answer.status_code == 503
        assert answer.json()["error"] == {
            "code": "no_ready_replica",
            "message": "no ready replica of the service; retry later",
            "request_id": "rid-9",
        }
        one.ready = True
        wait.until(started.server_states, lambda s: s["ocr-1"] == "UP", timeout=3, interval=0.05, what="slot 1 UP")
        started.retire(2)
        assert started.server_states()["ocr-2"] == "MAINT"
        assert served_by("team-d") == {"one"}
    finally:
        started.process.stop()
        authz.process.stop()
    lines = [x for x in started.process.log_text().splitlines() if '"path":"/predict"' in x]
    assert '"server":"ocr-1"' in lines[0] and '"retries":"0"' in lines[0], lines[0]
