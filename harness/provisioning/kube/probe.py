"""What a probe pod sees when it calls a URL, step by step: name resolution, TCP connect, then HTTP.

The source of this module is sent to the probe pod and run there (``python -c``, the standard library
only), so that a refusal can be told apart from everything else that also yields "no HTTP answer":

- ``dns_failure``: the name did not resolve (a wrong name, a broken cluster DNS);
- ``connect_refused``: the address answered the SYN with a reset (no endpoint: the predictor is down);
- ``connect_timeout``: nothing answered the SYN in time (a network policy dropping packets, a dead node);
- ``closed_without_answer``: the connection was accepted, then closed or reset before a single byte came
  back: what a sidecar with STRICT mutual TLS does to a plaintext request;
- ``read_timeout``: accepted, but silent until the deadline (neither mTLS nor a server);
- ``not_http``: bytes came back, but no HTTP status line;
- ``http``: an HTTP status line came back (``status``; ``body``: the first bytes after the headers).

Run with a URL (``http://host:port/path``); prints one JSON line.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

OUTCOMES = (
    "dns_failure", "connect_refused", "connect_timeout", "closed_without_answer", "read_timeout", "not_http", "http",
)  # fmt: skip


def probe(url: str, timeout: float = 10.0) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    seen: dict[str, Any] = {"url": url}
    started = time.monotonic()
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except socket.gaierror as exc:
        return {**seen, "outcome": "dns_failure", "error": str(exc)}
    seen["address"] = list(address[:2])
    sock = socket.socket(socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(address)
        except ConnectionRefusedError as exc:
            return {**seen, "outcome": "connect_refused", "error": str(exc)}
        except TimeoutError as exc:
            return {**seen, "outcome": "connect_timeout", "error": str(exc) or "timed out"}
        seen["connected_after_s"] = round(time.monotonic() - started, 3)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        received = b""
        try:
            sock.sendall(request)
            while len(received) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            if not received:
                return {**seen, "outcome": "read_timeout", "error": f"no byte within {timeout:g} s"}
        except (ConnectionResetError, BrokenPipeError) as exc:
            if not received:
                return {**seen, "outcome": "closed_without_answer", "error": f"{type(exc).__name__}: {exc}"}
        if not received:
            return {**seen, "outcome": "closed_without_answer", "error": "closed by the peer before any byte"}
        head, _, body = received.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not (fields[1].isascii() and fields[1].isdigit()):
            return {**seen, "outcome": "not_http", "error": f"not HTTP: {received[:60]!r}"}
        return {**seen, "outcome": "http", "status": int(fields[1]), "body": body[:200].decode(errors="replace")}
    finally:
        sock.close()


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)))
