"""The local gateway: its configuration passes HAProxy's own checker, and a real HAProxy in front of a
recording upstream keeps each promise (keys, the per-second limit, the tenant, the access log)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.acceptance import gateway
from harness.acceptance.components import Authorizer, start_authorizer
from harness.errors import CommandFailed, HarnessError

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)"
)


class Upstream(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/readyz":  # the gateway's readiness checks are not requests of the tests
            self.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"text": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


KEYS = {"team-a": "key-of-team-a", "team-b": "key-of-team-b"}
IDS = {"team-a": "primary", "team-b": "secondary"}


@pytest.fixture
def authorizer(tmp_path: Path) -> Iterator[Authorizer]:
    """The platform's real authorizer (python -m service.authz), knowing KEYS by their hashes."""
    started = start_authorizer(tmp_path / "logs", tmp_path / "authz", {k: (IDS[c], c) for c, k in KEYS.items()})
    try:
        yield started
    finally:
        started.process.stop()


@contextmanager
def gateway_in_front_of(
    handler: type[BaseHTTPRequestHandler], tmp_path: Path, authorizer: Authorizer
) -> Iterator[gateway.Gateway]:
    """The local gateway, asking ``authorizer``, in front of one replica answering with ``handler``."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    started = gateway.start_gateway(
        tmp_path / "logs", tmp_path / "work", upstream=f"http://127.0.0.1:{upstream.server_port}",
        authorizer=authorizer.url, keys=KEYS,
    )  # fmt: skip
    try:
        yield started
    finally:
        started.process.stop()
        upstream.shutdown()
        upstream.server_close()


@pytest.fixture
def running(tmp_path: Path, authorizer: Authorizer) -> Iterator[gateway.Gateway]:
    Upstream.seen = []
    with gateway_in_front_of(Upstream, tmp_path, authorizer) as started:
        yield started


def test_the_limit_is_the_clusters(tmp_path: Path) -> None:
    assert gateway.requests_per_second() == 10
    config = tmp_path / "config.yaml"
    config.write_text(
        "domain: ocr-api\ndescriptors:\n  - key: api_key\n    rate_limit: {unit: minute, requests_per_unit: 5}\n"
    )
    with pytest.raises(HarnessError, match="per 'minute'"):
        gateway.requests_per_second(config)
    config.write_text("domain: ocr-api\ndescriptors: []\n")
    with pytest.raises(HarnessError, match="no per-API-key descriptor"):
        gateway.requests_per_second(config)


def test_the_config_passes_haproxys_checker_and_a_broken_one_does_not(tmp_path: Path) -> None:
    lua = tmp_path / "authz.lua"
    lua.write_text(gateway.lua_script("http://127.0.0.1:18082"))
    config = tmp_path / "haproxy.cfg"
    errors = gateway.write_error_files(tmp_path / "errors")
    config.write_text(gateway.haproxy_config(port=18080, upstream="http://127.0.0.1:18081", lua=lua, limit=10,
                                             error_files=errors))  # fmt: skip
    gateway.check_config("haproxy", config)
    config.write_text(config.read_text().replace("track-sc0", "track-sc9"))
    with pytest.raises(CommandFailed):
        gateway.check_config("haproxy", config)


def test_a_request_needs_a_known_key(running: gateway.Gateway) -> None:
    for headers in ({}, {"x-api-key": "guessed"}, {"x-api-key": ""}):
        response = httpx.post(f"{running.url}/predict", headers={"X-Request-ID": "rid-1", **headers}, timeout=10)
        assert response.status_code == 403, headers
        assert response.json() == {
            "error": {
                "code": "invalid_api_key",
                "message": "a known API key is required in the x-api-key header",
                "request_id": "rid-1",
            }
        }
    assert Upstream.seen == []


def test_the_tenant_and_key_id_are_the_authorizers_and_the_key_goes_no_further(running: gateway.Gateway) -> None:
    headers = {"x-api-key": "key-of-team-a", "X-Tenant-ID": "team-b", "x-api-key-id": "secondary"}
    headers["X-Request-ID"] = "rid-2"
    assert httpx.post(f"{running.url}/predict", headers=headers, timeout=10).status_code == 200
    (seen,) = Upstream.seen
    assert seen["x-tenant-id"] == "team-a"
    assert seen["x-api-key-id"] == "primary"
    assert seen["x-request-id"] == "rid-2"
    assert "x-api-key" not in seen


@pytest.mark.parametrize(
    "headers",
    [
        [("x-api-key", "bogus, key-of-team-a")],
        [("x-api-key", "key-of-team-a,key-of-team-b")],
        [("x-api-key", "bogus"), ("x-api-key", "key-of-team-a")],
        [("x-api-key", "key-of-team-a"), ("x-api-key", "key-of-team-a")],
    ],
    ids=["comma-list", "two-keys-one-header", "unknown-then-known", "one-key-twice"],
)
def test_exactly_one_key_header_with_one_value_is_the_rule(
    running: gateway.Gateway, headers: list[tuple[str, str]]
) -> None:
    # The gateway sends the key headers to the authorizer as the client sent them; the authorizer's rule holds.
    with httpx.Client(timeout=10) as client:
        answer = client.send(client.build_request("POST", f"{running.url}/predict", headers=headers))
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert Upstream.seen == []


def test_a_broken_authorizer_refuses_every_key_and_the_gateway_fails_closed(
    running: gateway.Gateway, authorizer: Authorizer
) -> None:
    # The gateway's decision is the authorizer's: with it gone, no key gets through (failOpen: false).
    assert httpx.post(f"{running.url}/predict", headers={"x-api-key": "key-of-team-a"}, timeout=10).status_code == 200
    authorizer.process.stop()
    answer = httpx.post(f"{running.url}/predict", headers={"x-api-key": "key-of-team-a"}, timeout=10)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "authorizer_unavailable"
    assert len(Upstream.seen) == 1


def test_each_key_gets_its_limit_per_second_and_an_injected_request_id_stays_json(running: gateway.Gateway) -> None:
    # Start just after a second begins, so all 24 requests fall in one window.
    time.sleep(1.05 - time.time() % 1)
    statuses: dict[str, list[int]] = {"team-a": [], "team-b": []}
    responses = []
    with httpx.Client(timeout=10) as client:  # one connection: 24 requests well inside one second
        for i in range(12):
            for name in ("team-a", "team-b"):
                headers = {"x-api-key": f"key-of-{name}", "X-Request-ID": 'evil"}} ' + str(i)}
                response = client.post(f"{running.url}/predict", headers=headers)
                statuses[name].append(response.status_code)
                responses.append(response)
    assert statuses["team-a"] == [200] * 10 + [429] * 2
    assert statuses["team-b"] == [200] * 10 + [429] * 2
    refused = responses[-1]
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["request_id"] == 'evil"}} 11'
    # A new second, a new window.
    time.sleep(1.05 - time.time() % 1)
    assert httpx.post(f"{running.url}/predict", headers={"x-api-key": "key-of-team-a"}, timeout=10).status_code == 200


def test_the_access_log_names_the_client_never_the_key(running: gateway.Gateway) -> None:
    httpx.post(f"{running.url}/predict", headers={"x-api-key": "key-of-team-b", "X-Request-ID": "rid-3"}, timeout=10)
    httpx.post(f"{running.url}/predict", headers={"x-api-key": "nope"}, timeout=10)
    deadline = time.monotonic() + 5
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(entries) < 3:
        entries = [json.loads(line) for line in running.process.log_text().splitlines() if line.startswith("{")]
        time.sleep(0.1)
    by_id = {e["request_id"]: e for e in entries}
    assert by_id["rid-3"]["client"] == "team-b" and by_id["rid-3"]["status"] == 200
    assert by_id["rid-3"]["key_id"] == "secondary" and by_id["rid-3"]["authz"] == "200"
    assert by_id["rid-3"]["latency_ms"] >= 0 and by_id["rid-3"]["path"] == "/predict"
    assert any(e["status"] == 403 and e["client"] == "-" and e["authz"] == "403" for e in entries)
    assert "key-of-team-b" not in running.process.log_text()


def _raw(gateway_url: str, data: bytes) -> bytes:
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def _haproxy_version() -> tuple[int, int]:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10).stdout
    major, minor = out.split("version ", 1)[1].split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GE T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ],
    ids=["bad-request-line", "20-kb-header", "two-content-lengths", "disguised-transfer-encoding"],
)
def test_a_request_haproxy_cannot_parse_is_refused_400_and_never_forwarded(
    running: gateway.Gateway, request_bytes: bytes
) -> None:
    answer = _raw(running.url, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert Upstream.seen == []
    if _haproxy_version() >= (3, 2):
        # Before 3.2 HAProxy answers what it cannot parse with its built-in HTML page whatever errorfile says
        # (haproxy/haproxy#3032); from 3.2 on, the platform's JSON.
        assert json.loads(body)["error"]["code"] == "malformed_request"


class Garbage(Upstream):
    """A replica that passes its readiness checks and answers a request with bytes that are not HTTP."""

    def do_POST(self) -> None:
        if self.path == "/readyz":
            super().do_POST()
            return
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
        self.close_connection = True


def test_an_error_haproxy_makes_itself_is_the_platforms_json(tmp_path: Path, authorizer: Authorizer) -> None:
    """A replica answering garbage: HAProxy's own 502, in the platform's JSON rather than its HTML page."""
    with gateway_in_front_of(Garbage, tmp_path, authorizer) as started:
        answer = httpx.post(f"{started.url}/predict", headers={"x-api-key": KEYS["team-a"]}, timeout=10)
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "bad_gateway"


def test_every_error_haproxy_makes_itself_is_a_whole_json_response(tmp_path: Path) -> None:
    files = gateway.write_error_files(tmp_path)
    assert sorted(files) == [400, 408, 413, 501, 502, 504]
    for status, path in files.items():
        head, _, body = path.read_bytes().partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert f"content-length: {len(body)}".encode() in head.lower()
        assert set(json.loads(body)["error"]) == {"code", "message"}
    assert gateway.own_error_lines(files).count("errorfile ") == 6
