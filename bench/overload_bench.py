"""Overload refusals as clients read them: how many 503s arrive, and how many become connection resets.

A service with one inference place and no waiting line is sent uploads by many clients at once, each a real
PNG of a given size, over fresh connections (loopback only). The service refuses most of them 503 before it
reads their bodies; a refusal is only useful if the client can read it. Counted per client answer: 200, 503,
another status, or a transport error (a reset or a connection closed before a whole answer), against the
refusals the service says it sent (``ocr_rejections_total{reason="overload"}``).

    python -m bench.overload_bench [--clients 40] [--requests 400] [--kib 256]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import socket
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from harness.acceptance.components import Endpoint, start_service
from harness.acceptance.load import ensure_loopback

ENV = {"OCR_MAX_CONCURRENCY": "1", "OCR_MAX_QUEUE": "0", "OCR_INTRA_OP_THREADS": "1"}


def noise_png(kib: int, seed: int = 7) -> bytes:
    """A PNG of about ``kib`` KiB (random pixels do not compress), small in pixels so inference is quick."""
    side = max(16, int((kib * 1024 / 3) ** 0.5))
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _rejections(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ocr_rejections_total{") and 'reason="overload"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def multipart(data: bytes, boundary: str = "overload-bench") -> tuple[bytes, str]:
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="noise.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def one(url: str, data: bytes) -> str:
    """The plainest client: send the whole request, then read the answer (as curl, urllib and most HTTP/1.1
    libraries do). A refusal it cannot read (a reset while sending or reading) is a transport error."""
    host, port = url.removeprefix("http://").split(":")
    body, content_type = multipart(data)
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    answer = b""
    try:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head + body)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        if not answer.startswith(b"HTTP/1.1 "):
            return f"transport: {type(exc).__name__}"
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b""
    return status.decode() if status.isdigit() else "transport: no answer"


def measure(endpoint: Endpoint, *, clients: int, requests: int, kib: int) -> dict[str, Any]:
    ensure_loopback(endpoint.url)
    data = noise_png(kib)
    before = _rejections(httpx.get(f"{endpoint.url}/metrics", timeout=10).text)
    with ThreadPoolExecutor(clients) as pool:
        outcomes = Counter(pool.map(lambda _: one(endpoint.url, data), range(requests)))
    sent_503 = _rejections(httpx.get(f"{endpoint.url}/metrics", timeout=10).text) - before
    transport = sum(n for k, n in outcomes.items() if k.startswith("transport"))
    return {
        "clients": clients,
        "requests": requests,
        "upload_bytes": len(data),
        "answers": dict(sorted(outcomes.items())),
        "service_sent_503": int(sent_503),
        "client_read_503": outcomes.get("503", 0),
        "resets": transport,
        "reset_share_of_refusals": round(transport / sent_503, 4) if sent_503 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--kib", type=int, default=256, help="size of each upload")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as logs:
        endpoint = start_service(Path(logs), name="overload-bench", env=ENV)
        try:
            result = measure(endpoint, clients=args.clients, requests=args.requests, kib=args.kib)
        finally:
            endpoint.process.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
