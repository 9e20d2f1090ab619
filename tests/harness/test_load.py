import threading
import time
from pathlib import Path

import pytest

from bench.gateway_limiter_bench import Stream, drive, paced_offsets, start_upstream
from harness.acceptance.load import Pacer, RemoteLoadRefused, ensure_loopback, locust_argv, paced, parse_locust_stats


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80", "http://127.3.2.1"])
def test_loopback_is_allowed(url: str) -> None:
    ensure_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.5:80", "http://192.168.1.2", "http://example.com", "http://8.8.8.8"])
def test_anything_else_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_ALLOW_REMOTE_LOAD", raising=False)
    with pytest.raises(RemoteLoadRefused):
        ensure_loopback(url)


def test_paced_sends_exactly_rate_times_seconds_on_schedule() -> None:
    calls: list[float] = []
    lock = threading.Lock()

    def send() -> int:
        with lock:
            calls.append(time.monotonic())
        return 429 if len(calls) % 2 else 200

    result = paced(send, rate=20, seconds=1)
    assert len(result.sent) == 20
    assert result.statuses() == {200: 10, 429: 10}
    # Each request is recorded when it was really sent: on schedule, within a small tolerance.
    sent = [t for t, _ in result.sent]
    assert all(abs(t - i / 20) < 0.04 for i, t in enumerate(sent)), sent
    assert calls[-1] - calls[0] >= 0.9  # spread over the second, not a burst


def test_paced_counts_transport_errors_as_status_0() -> None:
    def send() -> int:
        raise ConnectionError("reset")

    result = paced(send, rate=5, seconds=1)
    assert result.statuses() == {0: 5}
    assert result.kinds() == {"transport": 5}


def test_paced_keeps_what_the_sender_says_answered_and_how_long_it_took() -> None:
    def send() -> tuple[int, str]:
        time.sleep(0.05)
        return 503, "gateway 5xx"

    result = paced(send, rate=4, seconds=1)
    assert result.kinds() == {"gateway 5xx": 4}
    assert all(0.05 <= s < 0.5 for s in result.latencies("gateway 5xx")), result.answers


def test_locust_argv_runs_headless_with_csv(tmp_path: Path) -> None:
    argv = locust_argv("http://127.0.0.1:9", users=4, spawn_rate=2, seconds=10, csv_prefix=tmp_path / "x")
    assert argv[1:3] == ["-m", "locust"]
    for flag in ("--headless", "--only-summary"):
        assert flag in argv
    assert argv[argv.index("-u") + 1] == "4" and argv[argv.index("--run-time") + 1] == "10s"


def test_locust_stats_are_read_from_csv(tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
        "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
        "99.99%,100%\n"
        "POST,/predict,120,3,80,85,40,300,200,12.0,0.3,80,90,95,100,120,150,200,250,300,300,300\n"
        ",Aggregated,120,3,80,85,40,300,200,12.0,0.3,80,90,95,100,120,150,200,250,300,300,300\n"
    )
    stats = parse_locust_stats(tmp_path / "locust")
    assert (stats.requests, stats.failures, stats.p95_ms, stats.rps) == (120, 3, 150.0, 12.0)
    assert stats.error_ratio == 0.025


def test_the_pacer_keeps_a_schedule_of_offsets_from_a_given_start_and_passes_each_index() -> None:
    begin = time.monotonic() + 0.2
    pacer = Pacer(lambda i, sent_at: (i, sent_at), offsets=[0.0, 0.1, 0.2, 0.7, 0.75], max_in_flight=4).start(at=begin)
    seen = sorted(pacer.wait(timeout=10))
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert all(abs(at - [0.0, 0.1, 0.2, 0.7, 0.75][i]) < 0.04 for i, at in seen), seen


def test_the_gateway_benchmark_drives_its_streams_through_the_pacer_on_schedule() -> None:
    server, _ = start_upstream()
    try:
        port = server.server_address[1]
        out = drive(port, [(Stream("A", paced_offsets(20, 0.5)), None), (Stream("B", paced_offsets(4, 0.5)), "k")])
    finally:
        server.shutdown()
    assert [o.stream for o in out].count("A") == 10 and [o.stream for o in out].count("B") == 2
    assert {o.status for o in out} == {200}
    first = out[0].sent
    assert all(abs((o.sent - first) - o.offset) < 0.05 for o in out), [(o.offset, o.sent - first) for o in out]
