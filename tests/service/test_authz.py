"""The gateway's API-key authorizer (``python -m service.authz``), as a real process on loopback.

Each test starts the process on free ports with a hashes file in a temporary directory, sends the requests
Envoy's ext_authz HTTP client would send (any method, the client's path, ``x-api-key``, ``x-request-id``,
``Content-Length: 0``), and reads the answers and the process's log lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import wait
from harness.ports import free_port
from harness.provisioning.paths import REPO_ROOT
from service.authz import server as authz
from service.authz.settings import AuthzSettings, load_authz_settings
from service.errors import SettingsError

KEY_A = "k" * 20 + "-primary-key-for-tests-0123"
KEY_B = "k" * 20 + "-secondary-key-for-test-4567"
KEY_C = "k" * 20 + "-rotated-in-key-for-tests-89"


def hashes_text(*entries: tuple[str, str, str]) -> str:
    return "# generated for a test\n" + "".join(authz.hash_line(i, t, k) + "\n" for i, t, k in entries)


def write_atomically(path: Path, text: str) -> None:
    """As kubelet updates a Secret volume: a new file swapped in by rename (a new inode)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


@dataclass
class Authorizer:
    process: subprocess.Popen[str]
    url: str
    health: str
    hashes: Path
    log_path: Path

    def check(
        self, key: str | None = None, *, method: str = "GET", path: str = "/predict", **headers: str
    ) -> httpx.Response:
        sent = {"content-length": "0", **headers}
        if key is not None:
            sent["x-api-key"] = key
        return httpx.request(method, self.url + path, headers=sent, timeout=5.0)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def raw_log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def authorizer(tmp_path: Path) -> Iterator[Authorizer]:
    hashes = tmp_path / "hashes.jsonl"
    hashes.write_text(hashes_text(("primary", "team-a", KEY_A), ("secondary", "team-b", KEY_B)))
    port, health_port = free_port(), free_port()
    env = {
        **os.environ,
        "OCR_AUTHZ_HASHES_FILE": str(hashes),
        "OCR_AUTHZ_HOST": "127.0.0.1",
        "OCR_AUTHZ_PORT": str(port),
        "OCR_AUTHZ_HEALTH_PORT": str(health_port),
        "OCR_AUTHZ_RELOAD_S": "0.2",
    }
    log_path = tmp_path / "authz.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.authz"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log, text=True
        )
    found = Authorizer(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health_port}", hashes, log_path)
    try:
        wait.until(
            lambda: httpx.get(found.health + "/readyz", timeout=1.0).status_code,
            lambda status: status == 200,
            timeout=20,
            interval=0.1,
            what="the authorizer ready",
        )
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_known_key_is_allowed_with_its_tenant_and_key_id(authorizer: Authorizer) -> None:
    answer = authorizer.check(KEY_A, **{"x-request-id": "r-1"})
    assert answer.status_code == 200
    assert answer.headers["x-tenant-id"] == "team-a" and answer.headers["x-api-key-id"] == "primary"
    # The key itself is dropped from the request the gateway forwards.
    assert answer.headers["x-envoy-auth-headers-to-remove"] == "x-api-key"
    second = authorizer.check(KEY_B)
    assert (second.status_code, second.headers["x-tenant-id"], second.headers["x-api-key-id"]) == (
        200,
        "team-b",
        "secondary",
    )


def test_any_method_and_path_is_a_check(authorizer: Authorizer) -> None:
    """Envoy sends the client's method and path: none of them reaches anything but the check, health included."""
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE"]:
        for path in ["/", "/predict", "/jobs/abc?x=1", "/healthz", "/readyz", "/check/a/b"]:
            assert authorizer.check(KEY_A, method=method, path=path).status_code == 200, (method, path)
            assert authorizer.check("nope", method=method, path=path).status_code == 403, (method, path)
            assert authorizer.check(None, method=method, path=path).status_code == 403, (method, path)


def test_anything_but_a_known_key_is_403_with_the_gateways_json(authorizer: Authorizer) -> None:
    for key in [None, "", "wrong", KEY_A[:-1], KEY_A + "x", KEY_A.upper(), f"{KEY_A},{KEY_B}", "x" * 5000]:
        answer = authorizer.check(key, **{"x-request-id": "req-42"})
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "error": {
                "code": "invalid_api_key",
                "message": "a known API key is required in the x-api-key header",
                "request_id": "req-42",
            }
        }
        assert "x-tenant-id" not in answer.headers and "x-api-key-id" not in answer.headers


def test_the_gateways_send_and_keep_the_headers_the_authorizer_reads_and_writes() -> None:
    """The Istio provider (and the local gateway, which reads the same list) sends the key and the request id,
    and copies the tenant and the key id upstream: the names this authorizer uses."""
    from harness.acceptance import gateway

    assert set(gateway.CHECK_HEADERS) == {authz.API_KEY_HEADER, authz.REQUEST_ID_HEADER}
    assert set(gateway.UPSTREAM_ON_ALLOW) == {authz.TENANT_HEADER, authz.KEY_ID_HEADER}


def test_two_keys_in_two_headers_are_refused(authorizer: Authorizer) -> None:
    with httpx.Client(timeout=5.0) as client:
        request = client.build_request(
            "GET", authorizer.url + "/", headers=[("x-api-key", KEY_A), ("x-api-key", KEY_B)]
        )
        assert client.send(request).status_code == 403


def test_a_request_without_a_request_id_gets_one(authorizer: Authorizer) -> None:
    assert authorizer.check("wrong").json()["error"]["request_id"]


def test_keep_alive_connections_serve_many_checks(authorizer: Authorizer) -> None:
    with httpx.Client(timeout=5.0) as client:
        statuses = [client.get(authorizer.url + "/p", headers={"x-api-key": k}).status_code for k in [KEY_A, "no"] * 20]
    assert statuses == [200, 403] * 20


def test_health_and_readiness_on_their_own_port(authorizer: Authorizer) -> None:
    assert httpx.get(authorizer.health + "/healthz", timeout=5.0).json() == {"status": "ok"}
    assert httpx.get(authorizer.health + "/readyz", timeout=5.0).json() == {"status": "ready", "keys": 2}
    assert httpx.get(authorizer.health + "/other", timeout=5.0).status_code == 404


def _status_for(authorizer: Authorizer, key: str) -> int:
    return authorizer.check(key).status_code


def test_rotation_and_revocation_by_rewriting_the_file(authorizer: Authorizer) -> None:
    # Rotate the secondary key: the new key is in force and the old one is refused, without a restart.
    write_atomically(authorizer.hashes, hashes_text(("primary", "team-a", KEY_A), ("secondary", "team-b", KEY_C)))
    wait.until(lambda: _status_for(authorizer, KEY_C), lambda s: s == 200, timeout=10, interval=0.1,
               what="the rotated key allowed")  # fmt: skip
    assert _status_for(authorizer, KEY_B) == 403
    assert authorizer.check(KEY_C).headers["x-tenant-id"] == "team-b"
    # Revoke the primary by removing its line.
    write_atomically(authorizer.hashes, hashes_text(("secondary", "team-b", KEY_C)))
    wait.until(lambda: _status_for(authorizer, KEY_A), lambda s: s == 403, timeout=10, interval=0.1,
               what="the revoked key refused")  # fmt: skip
    assert _status_for(authorizer, KEY_C) == 200
    assert authorizer.process.poll() is None  # the same process all along


def test_an_edit_in_place_is_picked_up_too(authorizer: Authorizer) -> None:
    authorizer.hashes.write_text(hashes_text(("tertiary", "team-c", KEY_C)))
    wait.until(lambda: _status_for(authorizer, KEY_C), lambda s: s == 200, timeout=10, interval=0.1,
               what="the new key allowed")  # fmt: skip
    assert _status_for(authorizer, KEY_A) == 403


def test_a_broken_file_keeps_the_keys_in_force_and_says_which_line(authorizer: Authorizer) -> None:
    good = hashes_text(("primary", "team-a", KEY_A))
    write_atomically(authorizer.hashes, good + '{"key_id": "x", "tenant": "t", "salt": "zz", "hash": "00"}\n')
    wait.until(
        lambda: [line for line in authorizer.lines() if line["message"].startswith("hashes file refused")],
        bool,
        timeout=10,
        interval=0.1,
        what="the broken file refused",
    )
    refused = next(line for line in authorizer.lines() if line["message"].startswith("hashes file refused"))
    assert refused["level"] == "error" and "line 3" in refused["error"]
    assert _status_for(authorizer, KEY_A) == 200 and _status_for(authorizer, KEY_B) == 200
    # Fixed: the fixed file is loaded.
    write_atomically(authorizer.hashes, good)
    wait.until(lambda: _status_for(authorizer, KEY_B), lambda s: s == 403, timeout=10, interval=0.1,
               what="the fixed file loaded")  # fmt: skip


def test_an_empty_file_is_refused_and_the_keys_stay(authorizer: Authorizer) -> None:
    """A file rewritten in place is empty for a moment: read then, it revoked every key (331 of 19,565 valid
    requests refused in one try)."""
    for empty in ("", "\n  \n"):
        authorizer.hashes.write_text(empty)
        wait.until(
            lambda: [line for line in authorizer.lines() if "the file is empty" in str(line.get("error", ""))],
            bool, timeout=10, interval=0.1, what="the empty file refused",
        )  # fmt: skip
        assert _status_for(authorizer, KEY_A) == 200 and _status_for(authorizer, KEY_B) == 200
    assert httpx.get(authorizer.health + "/readyz", timeout=5.0).status_code == 200
    # A file that admits nobody on purpose says so (the committed placeholder is one): it is loaded.
    authorizer.hashes.write_text("# no key yet: placeholder\n")
    wait.until(lambda: _status_for(authorizer, KEY_A), lambda s: s == 403, timeout=10, interval=0.1,
               what="a deliberate file of no key loaded")  # fmt: skip


def _raw(url: str, data: bytes, timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        return received


def test_an_http_0_9_request_line_is_refused_at_once(authorizer: Authorizer) -> None:
    """ "GET /" with no version had http.server wait for headers until its hour-long idle timeout."""
    started = time.monotonic()
    answer = _raw(authorizer.url, b"GET /\r\n")
    assert time.monotonic() - started < 3, "held instead of refused"
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"malformed_request"' in answer
    assert _status_for(authorizer, KEY_A) == 200  # and the process serves on


@pytest.mark.parametrize("length", [b"\xb2", "\u0663".encode(), b"1\xb9", b"-1", b"99999999999999999999"])
def test_a_content_length_that_is_not_ascii_digits_is_answered_and_logged_once(
    authorizer: Authorizer, length: bytes
) -> None:
    """ "²" passed str.isdigit() and failed int(): no answer, and a traceback of 17 log lines."""
    before = len(authorizer.lines())
    answer = _raw(authorizer.url, b"GET /x HTTP/1.1\r\nHost: a\r\nx-api-key: " + KEY_A.encode()
                  + b"\r\nContent-Length: " + length + b"\r\n\r\n")  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"connection: close" in answer.lower()  # the body is left unread: the connection is not reused
    new = authorizer.lines()[before:]
    assert [line["message"] for line in new] == ["allowed"], new


def test_without_a_valid_file_everything_is_refused_and_not_ready(tmp_path: Path) -> None:
    settings = AuthzSettings(
        hashes_file=tmp_path / "absent.jsonl", host="127.0.0.1", port=free_port(), health_port=free_port(), reload_s=0.1
    )

    stop = threading.Event()
    thread = threading.Thread(target=authz.serve, args=(settings, stop), daemon=True)
    thread.start()
    try:
        health = f"http://127.0.0.1:{settings.health_port}/readyz"
        wait.until(lambda: httpx.get(health, timeout=1.0).status_code, lambda s: s == 503, timeout=10, interval=0.1,
                   what="not ready without hashes")  # fmt: skip
        answer = httpx.get(f"http://127.0.0.1:{settings.port}/", headers={"x-api-key": KEY_A}, timeout=5.0)
        assert answer.status_code == 403
        settings.hashes_file.write_text(hashes_text(("primary", "team-a", KEY_A)))
        wait.until(lambda: httpx.get(health, timeout=1.0).status_code, lambda s: s == 200, timeout=10, interval=0.1,
                   what="ready once the file appears")  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_every_log_line_is_json_and_no_key_is_ever_logged(authorizer: Authorizer) -> None:
    authorizer.check(KEY_A, **{"x-request-id": "allowed-1"})
    authorizer.check(KEY_B + "x", **{"x-request-id": "denied-1"})
    authorizer.check(None, **{"x-request-id": "denied-2"})
    # A malformed request line that quotes a key: http.server's own error path.
    host, port = authorizer.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5.0) as raw:
        raw.sendall(f"GET /{KEY_B} HTTP/1.1 {KEY_B}\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    # An HTTP/1.1 answer with a status line (http.server's own path answered as HTTP/0.9, with none).
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert json.loads(body) == {"error": {"code": "malformed_request", "message": "HTTP 400"}}
    assert KEY_B.encode() not in answer
    wait.until(lambda: {line.get("request_id") for line in authorizer.lines()}, lambda ids: "denied-2" in ids,
               timeout=10, interval=0.1, what="the decisions logged")  # fmt: skip
    lines = authorizer.lines()  # json.loads of every line: each one is a JSON object
    allowed = next(line for line in lines if line.get("request_id") == "allowed-1")
    assert (allowed["message"], allowed["key_id"], allowed["tenant"], allowed["path"]) == (
        "allowed",
        "primary",
        "team-a",
        "/predict",
    )
    denied = {line["request_id"]: line for line in lines if line["message"] == "denied"}
    assert denied["denied-1"]["reason"] == "unknown" and denied["denied-2"]["reason"] == "missing"
    text = authorizer.raw_log()
    for key in (KEY_A, KEY_B, KEY_A[:16], KEY_B[-16:]):
        assert key not in text


def test_sigterm_stops_it_cleanly(authorizer: Authorizer) -> None:
    authorizer.process.send_signal(signal.SIGTERM)
    assert authorizer.process.wait(timeout=10) == 0
    assert authorizer.lines()[-1]["message"] == "authorizer stopped"


def test_hash_lines_are_salted_and_checked() -> None:
    first, second = authz.hash_line("a", "team-a", KEY_A), authz.hash_line("a", "team-a", KEY_A)
    assert first != second  # a fresh salt each time
    entries = authz.parse_hashes(first)
    assert KEY_A not in first and authz.KeyTable(entries).lookup(KEY_A) == entries[0]
    assert authz.KeyTable(entries).lookup(KEY_B) is None
    for broken, message in [
        ("[1]", "line 1: not a JSON object"),
        ('{"key_id": "a"}', "'tenant' is missing"),
        (first.replace('"team-a"', '"team a"'), "tenant does not match"),
        (first.replace("hmac-sha256", "md5"), "alg is not hmac-sha256"),
        (first + "\n" + second, "line 2: key_id 'a' appears twice"),
    ]:
        with pytest.raises(authz.InvalidHashes, match=message):
            authz.parse_hashes(broken)


# -- the hashes file's format, against the vectors the harness is tested against too ---------------------

HASH_VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "api-key-hashes.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", HASH_VECTORS, ids=[v["key_id"] for v in HASH_VECTORS])
def test_the_authorizer_writes_and_admits_the_shared_vectors(vector: dict[str, str]) -> None:
    assert (
        authz.hash_line(vector["key_id"], vector["tenant"], vector["key"], salt=bytes.fromhex(vector["salt"]))
        == (vector["line"])
    )
    table = authz.KeyTable(authz.parse_hashes(vector["line"]))
    entry = table.lookup(vector["key"])
    assert entry is not None and (entry.key_id, entry.tenant) == (vector["key_id"], vector["tenant"])
    assert table.lookup(vector["key"] + "x") is None


def test_settings_come_from_the_environment_and_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_AUTHZ_PORT", "9123")
    monkeypatch.setenv("OCR_LOG_LEVEL", "debug")
    settings = load_authz_settings()
    assert (settings.port, settings.log_level, settings.health_port) == (9123, "debug", 8081)
    monkeypatch.setenv("OCR_AUTHZ_RELOAD_S", "0")
    monkeypatch.setenv("OCR_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError) as refused:
        load_authz_settings()
    assert "OCR_AUTHZ_RELOAD_S" in str(refused.value) and "OCR_LOG_LEVEL" in str(refused.value)


def test_the_authorizer_refuses_to_start_with_a_bad_setting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.authz"], cwd=REPO_ROOT, env={**os.environ, "OCR_AUTHZ_PORT": "http"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "OCR_AUTHZ_PORT" in done.stdout + done.stderr
