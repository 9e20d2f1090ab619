"""The probe a pod runs to tell a mutual-TLS refusal from every other way of getting no HTTP answer.

Each outcome is produced here by a real peer on loopback that behaves as the cluster case does: a listener
that closes (a STRICT sidecar given plaintext), one that resets, one that stays silent, a closed port (no
endpoint), an HTTP server, and a name that cannot resolve. The probe is also run as the pod runs it: its
source through ``python -c``, the standard library only.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from harness.acceptance.targets.kube import PROBE_SCRIPT
from harness.provisioning.kube.probe import OUTCOMES, probe


@contextmanager
def peer(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener that treats each accepted connection with ``handle``; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        server.close()
        thread.join(timeout=5)


def close_after_reading(conn: socket.socket) -> None:
    conn.recv(1024)  # plaintext, not a TLS ClientHello: the sidecar closes


def reset_after_reading(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST


def stay_silent(conn: socket.socket) -> None:
    conn.recv(1024)
    threading.Event().wait(0.8)


def answer_403(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n\r\nRBAC: access denied")


def answer_garbage(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"\x15\x03\x01\x00\x02\x02\x46")  # a TLS alert, not HTTP


def answer_unicode_status(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 \xb2 Nope\r\ncontent-length: 0\r\n\r\n")  # read as latin-1: "²", not a status


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("handle", "outcome"),
    [
        (close_after_reading, "closed_without_answer"),
        (reset_after_reading, "closed_without_answer"),
        (stay_silent, "read_timeout"),
        (answer_garbage, "not_http"),
        (answer_unicode_status, "not_http"),
    ],
)
def test_a_connected_peer_is_classified_by_what_it_sent_back(handle: Callable, outcome: str) -> None:
    with peer(handle) as port:
        seen = probe(f"http://127.0.0.1:{port}/readyz", timeout=0.5)
    assert seen["outcome"] == outcome, seen
    assert seen["address"] == ["127.0.0.1", port]
    assert "connected_after_s" in seen and "status" not in seen


def test_an_http_answer_keeps_its_status_and_body() -> None:
    with peer(answer_403) as port:
        seen = probe(f"http://127.0.0.1:{port}/readyz", timeout=2)
    assert (seen["outcome"], seen["status"], seen["body"]) == ("http", 403, "RBAC: access denied"), seen


def test_a_closed_port_is_a_refused_connect_not_a_closed_connection() -> None:
    seen = probe(f"http://127.0.0.1:{closed_port()}/readyz", timeout=2)
    assert seen["outcome"] == "connect_refused", seen
    assert "connected_after_s" not in seen


def test_a_name_that_does_not_resolve_is_a_dns_failure() -> None:
    seen = probe("http://ocr-predictor.no-such-namespace.invalid/readyz", timeout=2)
    assert seen["outcome"] == "dns_failure" and "address" not in seen, seen


def test_the_source_sent_to_the_pod_runs_alone_and_prints_one_json_line() -> None:
    with peer(close_after_reading) as port:
        out = subprocess.run(
            [sys.executable, "-I", "-c", PROBE_SCRIPT, f"http://127.0.0.1:{port}/readyz", "2"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    assert json.loads(lines[0])["outcome"] == "closed_without_answer"
    assert set(OUTCOMES) >= {"closed_without_answer", "connect_refused", "dns_failure", "http"}
