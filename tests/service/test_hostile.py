"""Hostile input over real HTTP: a real service (and Redis for /jobs) on loopback, the real model.

Every case of the generated corpus goes to /predict and to /jobs: each answer is a JSON 4xx with the
request id, or a 200/202 for a legal image; never a 5xx; the service stays healthy; its peak RSS stays under
the pod's memory limit. Then what a hostile client can do below the image: a malformed HTTP header, uploads
that stall, request heads that never end, bodies sent to a full service, and a PNG that takes seconds to
parse.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.memory_bench import pod_memory_limit_mib
from harness import wait
from harness.acceptance.components import Endpoint, redis_url, start_redis, start_service, start_worker
from service.api.context import DRAIN_IDLE_S
from tests.service import corpus

CASES = {case.name: case for case in corpus.cases()}


@pytest.fixture(scope="module")
def redis_ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("hostile-redis")
    endpoint = start_redis(root, root / "redis")
    yield endpoint
    endpoint.process.stop()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, redis_ep: Endpoint) -> Iterator[Endpoint]:
    """The service at the predictor's settings (its 1-CPU limit: one inference at once, the 40 M pixel limit,
    whatever this machine's CPUs), with a job queue."""
    env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_MAX_CONCURRENCY": "1"}
    endpoint = start_service(tmp_path_factory.mktemp("hostile"), name="service-hostile", env=env)
    yield endpoint
    endpoint.process.stop()


STRICT_ENV = {
    "OCR_MAX_CONCURRENCY": "1",
    "OCR_MAX_QUEUE": "0",
    "OCR_UPLOAD_IDLE_TIMEOUT_S": "1.5",
    "OCR_UPLOAD_TIMEOUT_S": "4",
    "OCR_HEADER_TIMEOUT_S": "1.5",
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, redis_ep: Endpoint) -> Iterator[Endpoint]:
    """One admission place per route and short upload deadlines: stalls and refusals are quick to see."""
    env = {**STRICT_ENV, "OCR_REDIS_URL": redis_url(redis_ep)}
    endpoint = start_service(tmp_path_factory.mktemp("strict"), name="service-strict", env=env)
    yield endpoint
    endpoint.process.stop()


def memory(endpoint: Endpoint) -> dict[str, float]:
    status = Path(f"/proc/{endpoint.process.pid}/status").read_text()
    return {
        k: int(v.split()[0]) / 1024
        for k, _, v in (x.partition(":") for x in status.splitlines())
        if k in ("VmHWM", "VmRSS")
    }


def send(endpoint: Endpoint, route: str, case: corpus.Case) -> httpx.Response:
    body = case.make()
    if case.raw_body:
        headers = {"content-type": case.content_type} if case.content_type else {}
        return httpx.post(f"{endpoint.url}{route}", content=body, headers=headers, timeout=60)
    return httpx.post(f"{endpoint.url}{route}", files={"file": ("upload.bin", body)}, timeout=60)


def judge(case: corpus.Case, route: str, response: httpx.Response) -> str | None:
    """What is wrong with this answer to this case, or None."""
    status = response.status_code
    if case.ok:
        expected = 200 if route == "/predict" else 202
        return None if status == expected else f"expected {expected}, got {status}: {response.text[:200]}"
    if not 400 <= status < 500:
        return f"expected a JSON 4xx, got {status}: {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"4xx is not JSON: {response.headers.get('content-type')}"
    error = response.json().get("error", {})
    if error.get("request_id") != response.headers.get("x-request-id") or not error.get("message"):
        return f"error body without request id or message: {response.text[:200]}"
    if case.codes and error.get("code") not in case.codes:
        return f"expected one of {case.codes}, got {error.get('code')}: {error.get('message')}"
    return None


def test_hostile_corpus_gets_json_4xx_or_success_and_no_5xx(hostile: Endpoint, record_property) -> None:
    Path(f"/proc/{hostile.process.pid}/clear_refs").write_text("5")
    problems: dict[str, str] = {}
    seen: dict[str, int] = {}
    for name, case in CASES.items():
        for route in ("/predict", "/jobs"):
            response = send(hostile, route, case)
            seen[f"{route} {name}"] = response.status_code
            problem = judge(case, route, response)
            if problem:
                problems[f"{route} {name}"] = problem
    peak = memory(hostile)["VmHWM"]
    record_property("hostile_corpus_requests", len(seen))
    record_property("hostile_corpus_peak_rss_mb", round(peak, 1))
    print(f"\n{len(seen)} requests, 5xx: {sum(s >= 500 for s in seen.values())}, peak RSS {peak:.0f} MiB")
    assert not problems, json.dumps(problems, indent=1)
    assert httpx.get(f"{hostile.url}/readyz").status_code == 200
    assert peak < pod_memory_limit_mib()


def test_a_long_text_line_is_read_by_the_api_and_by_a_worker(
    hostile: Endpoint, redis_ep: Endpoint, tmp_path: Path
) -> None:
    data = corpus.encode(corpus.long_line(4000, 30), "PNG")
    response = httpx.post(f"{hostile.url}/predict", files={"file": ("line.png", data)}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["text"].startswith(corpus.long_line_text()), response.json()
    job = httpx.post(f"{hostile.url}/jobs", files={"file": ("line.png", data)}, timeout=60)
    assert job.status_code == 202, job.text
    worker = start_worker(tmp_path, name="worker-strips", env={"OCR_REDIS_URL": redis_url(redis_ep)})
    try:
        view = wait.until(
            lambda: httpx.get(f"{hostile.url}/jobs/{job.json()['job_id']}").json(),
            lambda v: v["status"] in ("succeeded", "failed"),
            timeout=60,
            what="the strip job to finish",
        ).last
    finally:
        worker.process.stop()
    assert view is not None and view["status"] == "succeeded", view
    assert view["result"]["text"].startswith(corpus.long_line_text())


# -- below the image: HTTP framing, slow and stalled clients ------------------------------------------


def raw_exchange(endpoint: Endpoint, payload: bytes, *, wait_s: float = 8.0) -> tuple[bytes, float]:
    """Send raw bytes, then read until the server closes or ``wait_s`` passes: (bytes read, seconds)."""
    start = time.monotonic()
    chunks = []
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=wait_s) as sock:
        sock.sendall(payload)
        sock.settimeout(wait_s)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks), time.monotonic() - start


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_header_with_a_bare_cr_gets_a_json_400_with_a_request_id(hostile: Endpoint) -> None:
    raw, _ = raw_exchange(hostile, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\rb\r\n\r\n", wait_s=5)
    status, headers, body = parse_response(raw)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request" and error["message"]
    assert error["request_id"] and error["request_id"] == headers["x-request-id"]
    assert httpx.get(f"{hostile.url}/healthz").status_code == 200


def upload_head(route: str, length: int, boundary: str = "stall") -> bytes:
    return (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def stalled_upload(route: str) -> bytes:
    """Headers for a 1 MB upload, then only the first 2 KB of it."""
    part = b'--stall\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + b"\0" * 2048
    return upload_head(route, 1024 * 1024) + part


@pytest.mark.parametrize("route", ["/predict", "/jobs"])
def test_a_stalled_upload_is_answered_408_and_frees_its_place(strict: Endpoint, route: str) -> None:
    raw, elapsed = raw_exchange(strict, stalled_upload(route), wait_s=8)
    assert raw, f"no answer within {elapsed:.1f}s: the stalled upload is still held"
    status, _, body = parse_response(raw)
    assert status == 408, raw[:300]
    assert json.loads(body)["error"]["code"] == "upload_timeout"
    assert elapsed < float(STRICT_ENV["OCR_UPLOAD_IDLE_TIMEOUT_S"]) + 2
    # The only place was given back: a real upload is served.
    data = corpus.encode(corpus._line(), "PNG")
    assert httpx.post(f"{strict.url}{route}", files={"file": ("a.png", data)}, timeout=30).status_code in (200, 202)


@pytest.mark.parametrize("route", ["/predict", "/jobs"])
def test_uploads_past_capacity_are_refused_before_their_body_is_read(strict: Endpoint, route: str) -> None:
    holder = threading.Thread(target=raw_exchange, args=(strict, stalled_upload(route)), kwargs={"wait_s": 8})
    holder.start()  # takes the route's only place, and stalls
    try:
        time.sleep(0.3)
        # Headers announcing 5 MB, and not one byte of them: the answer must not wait for the body. The close
        # follows once the client has sent nothing for DRAIN_IDLE_S (an unread body is drained first).
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", strict.port), timeout=4) as sock:
            sock.sendall(upload_head(route, 5 * 1024 * 1024))
            first = sock.recv(65536)
            answered = time.monotonic() - start
            raw = first + b"".join(iter(lambda: sock.recv(65536), b""))
            closed = time.monotonic() - start
        assert raw, "no answer to an upload sent to a full service: its body is being waited for"
        status, headers, body = parse_response(raw)
        assert status == 503 and json.loads(body)["error"]["code"] == "overloaded", raw[:300]
        assert int(headers["retry-after"]) >= 1 and headers.get("connection") == "close"
        assert answered < 1.0, f"answered after {answered:.2f}s"
        assert closed < DRAIN_IDLE_S + 1.5, f"closed after {closed:.2f}s"
    finally:
        holder.join(timeout=10)


def trickle(endpoint: Endpoint, route: str, *, every_s: float, wait_s: float) -> tuple[bytes, float]:
    """An upload announcing 1 MB that then sends one byte every ``every_s``: never idle long enough for the idle
    timeout. Returns the answer and when it came."""
    start = time.monotonic()
    part = b'--stall\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=wait_s) as sock:
        sock.sendall(upload_head(route, 1024 * 1024) + part)
        sock.settimeout(every_s)
        answer = b""
        while time.monotonic() - start < wait_s:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\0")
                continue
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - start


@pytest.mark.parametrize("route", ["/predict", "/jobs"])
def test_an_upload_slower_than_the_minimum_rate_is_answered_408_after_the_grace_period(
    strict: Endpoint, route: str
) -> None:
    """One byte every 0.4 s never trips the idle timeout (1.5 s here); it held its place until the whole upload's
    deadline (4 s here, 60 s by default), and ten such clients held every place of the service."""
    raw, elapsed = trickle(strict, route, every_s=0.4, wait_s=6)
    status, _, body = parse_response(raw)
    error = json.loads(body)["error"]
    assert status == 408 and error["code"] == "upload_timeout", raw[:300]
    assert "bytes a second" in error["message"], error
    assert elapsed < float(STRICT_ENV["OCR_UPLOAD_TIMEOUT_S"]) - 1, f"answered after {elapsed:.1f}s"
    data = corpus.encode(corpus._line(), "PNG")
    assert httpx.post(f"{strict.url}{route}", files={"file": ("a.png", data)}, timeout=30).status_code in (200, 202)


@pytest.fixture(scope="module")
def ten_places(tmp_path_factory: pytest.TempPathFactory, redis_ep: Endpoint) -> Iterator[Endpoint]:
    """The default deadlines (60 s an upload, 10 s idle, 16 KiB/s after 2 s) and ten /predict places."""
    env = {"OCR_MAX_CONCURRENCY": "2", "OCR_MAX_QUEUE": "8", "OCR_REDIS_URL": redis_url(redis_ep)}
    endpoint = start_service(tmp_path_factory.mktemp("ten"), name="service-ten-places", env=env)
    yield endpoint
    endpoint.process.stop()


def test_ten_trickling_uploads_do_not_keep_normal_clients_out(ten_places: Endpoint) -> None:
    """Ten uploads sending a byte every 4 s (never idle for 10 s) took all ten places until the 60 s upload
    deadline: every other client got 503 for a minute. Now each is answered 408 once the 2 s grace is over,
    and a client that honours Retry-After is served within seconds (with the minimum rate off: 503 for 15 s)."""
    with ThreadPoolExecutor(10) as pool:
        trickles = [pool.submit(trickle, ten_places, "/predict", every_s=4, wait_s=20) for _ in range(10)]
        time.sleep(0.5)
        data = corpus.encode(corpus._line(), "PNG")
        start, seen = time.monotonic(), []
        while time.monotonic() - start < 15:
            response = httpx.post(f"{ten_places.url}/predict", files={"file": ("a.png", data)}, timeout=30)
            seen.append(response.status_code)
            if response.status_code != 503:
                break
            time.sleep(min(float(response.headers.get("retry-after", "1")), 3))
        served_after = time.monotonic() - start
        answers = [future.result() for future in trickles]
    assert seen[-1] == 200, f"a normal client's answers over 15 s: {seen}"
    assert served_after < 10, f"served only after {served_after:.1f}s ({seen})"
    statuses = [parse_response(raw)[0] if raw else None for raw, _ in answers]
    assert statuses == [408] * 10, statuses
    assert max(elapsed for _, elapsed in answers) < 15, [round(e, 1) for _, e in answers]


def test_many_stalled_uploads_are_all_let_go(strict: Endpoint) -> None:
    count = 100
    with ThreadPoolExecutor(count) as pool:
        outcomes = list(
            pool.map(
                lambda i: raw_exchange(strict, stalled_upload(("/predict", "/jobs")[i % 2]), wait_s=10), range(count)
            )
        )
    unanswered = [elapsed for raw, elapsed in outcomes if not raw]
    assert not unanswered, f"{len(unanswered)} of {count} stalled uploads still open after 10 s"
    statuses = sorted({parse_response(raw)[0] for raw, _ in outcomes})
    assert set(statuses) <= {408, 503}, statuses
    assert httpx.get(f"{strict.url}/readyz").status_code == 200


def test_a_request_head_that_never_ends_is_closed(strict: Endpoint) -> None:
    raw, elapsed = raw_exchange(strict, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1", wait_s=6)
    assert elapsed < float(STRICT_ENV["OCR_HEADER_TIMEOUT_S"]) + 2, "the connection was held open"
    if raw:
        status, _, body = parse_response(raw)
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


def test_parsing_a_hostile_png_does_not_block_the_event_loop(hostile: Endpoint) -> None:
    bomb = corpus.chunk_bomb(700_000)
    latencies: list[float] = []
    with ThreadPoolExecutor(4) as pool:
        posts = [
            pool.submit(httpx.post, f"{hostile.url}/predict", files={"file": ("b.png", bomb)}, timeout=60)
            for _ in range(3)
        ]
        while not all(p.done() for p in posts):
            start = time.monotonic()
            assert httpx.get(f"{hostile.url}/healthz", timeout=10).status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.05)
        statuses = [p.result().status_code for p in posts]
    assert all(400 <= s < 500 for s in statuses), statuses
    assert max(latencies, default=0) < 0.5, f"/healthz took up to {max(latencies):.2f}s while PNGs were parsed"


def test_a_client_that_leaves_mid_upload_is_not_a_server_error(strict: Endpoint) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(stalled_upload("/predict") + b"\0" * 4096)
    # Logged and counted as the client's doing (499), never as a 500.
    line = wait.until(
        lambda: [json.loads(x) for x in strict.process.log_text().splitlines() if '"route":"/predict"' in x],
        lambda lines: any(x.get("status_code") == 499 for x in lines),
        timeout=5,
        what="the access line of the abandoned upload",
    ).last
    assert line and all(x["status_code"] != 500 for x in line)
    assert httpx.get(f"{strict.url}/readyz").status_code == 200


def test_a_request_with_both_content_length_and_transfer_encoding_is_refused(strict: Endpoint) -> None:
    """Two framings of one body (request smuggling's tool): a 400 in the service's JSON, the connection closed."""
    body = b"5\r\nhello\r\n0\r\n\r\n"
    request = (
        b"POST /predict HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nTransfer-Encoding: chunked\r\n"
        b"X-Request-ID: smuggle-1\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(4096):  # the server closes: nothing else is read from this connection
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    error = json.loads(payload)["error"]
    assert error["code"] == "bad_request" and "Transfer-Encoding" in error["message"], error
    assert error["request_id"] == "smuggle-1"
    assert b"connection: close" in head.lower()
    assert httpx.get(f"{strict.url}/readyz").status_code == 200
