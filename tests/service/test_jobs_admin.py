"""``python -m service.jobs.admin`` run as the harness runs it: a subprocess, over a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.acceptance.components import Endpoint, redis_url, start_redis
from service.jobs.store import JobStore
from service.settings import load_settings

PASSWORD = "admin-test-pass-3f9c"


def admin(url: str, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OCR_")}
    environment.update({"OCR_REDIS_URL": url, **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "service.jobs.admin", *args],
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess) -> Any:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return json.loads(result.stdout)  # the whole of stdout is one JSON document


def refused(result: subprocess.CompletedProcess, status: int) -> str:
    """The exit status, nothing on stdout, one line on stderr and no traceback."""
    message = result.stderr.decode()
    assert result.returncode == status, message
    assert result.stdout == b""
    assert message.count("\n") == 1 and message.startswith("jobs_admin: ")
    assert "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def redis_ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("jobs-admin")
    endpoint = start_redis(root, root / "data", password=PASSWORD)
    yield endpoint
    endpoint.process.stop()


@pytest.fixture
def url(redis_ep: Endpoint) -> Iterator[str]:
    url = redis_url(redis_ep)
    yield url
    JobStore(load_settings(redis_url=url)).redis.flushdb()


def store_for(url: str) -> JobStore:
    return JobStore(load_settings(redis_url=url))


def test_stats_of_an_empty_redis(url: str) -> None:
    assert ok(admin(url, "stats")) == {
        "lag": None, "pending": 0, "entries_added": 0, "length": 0, "queued_bytes": 0, "dead_letters": 0,
        "dead_letter_ids": [],
    }  # fmt: skip


def test_inject_queues_the_bytes_as_they_are(url: str) -> None:
    damaged = b"\x89PNG\r\n\x1a\n not really an image \x00\xff"
    job_id = ok(admin(url, "inject", "--tenant", "tests", stdin=damaged))["job_id"]
    stored = store_for(url).get(job_id)
    assert stored is not None
    assert (stored.image, stored.status, stored.request_id, stored.tenant_id) == (
        damaged, "queued", "admin-inject", "tests",
    )  # fmt: skip
    stats = ok(admin(url, "stats"))
    assert (stats["lag"], stats["pending"], stats["entries_added"], stats["length"]) == (1, 0, 1, 1)
    assert stats["queued_bytes"] == len(damaged)


def test_inject_defaults_to_the_tenant_of_a_client_without_x_tenant_id(url: str) -> None:
    """GET /jobs/{id} shows a job to its tenant only: an injected job is found by a client sending no
    X-Tenant-ID, as the acceptance steps are."""
    job_id = ok(admin(url, "inject", stdin=b"x"))["job_id"]
    stored = store_for(url).get(job_id, tenant_id="anonymous")
    assert stored is not None and stored.tenant_id == "anonymous"


def test_inject_refuses_empty_input_and_a_bad_tenant(url: str) -> None:
    assert "-i" in refused(admin(url, "inject"), 1)
    bad_tenant = admin(url, "inject", "--tenant", "no spaces", stdin=b"x")
    assert bad_tenant.returncode == 2 and bad_tenant.stdout == b""
    assert ok(admin(url, "stats"))["entries_added"] == 0


def test_stats_counts_pending_entries_and_lists_dead_letters_newest_first(url: str) -> None:
    store = store_for(url)
    store.ensure_group()
    failed = []
    for i in range(3):
        job_id, _ = store.enqueue(b"img", request_id=f"r{i}", tenant_id="t")
        (delivery,) = store.read("worker-a", block_ms=100)
        store.start(delivery, "worker-a")
        store.fail(delivery, "broken")
        failed.append(job_id)
    store.enqueue(b"img", request_id="running", tenant_id="t")
    store.enqueue(b"img", request_id="waiting", tenant_id="t")
    store.read("worker-a", block_ms=100)
    stats = ok(admin(url, "stats", "--limit", "2"))
    assert stats == {
        "lag": 1, "pending": 1, "entries_added": 5, "length": 2, "queued_bytes": 6, "dead_letters": 3,
        "dead_letter_ids": [failed[2], failed[1]],
    }  # fmt: skip
    assert ok(admin(url, "stats"))["dead_letter_ids"] == failed[::-1]


def test_job_shows_the_stored_view_and_worker_but_never_the_image(url: str) -> None:
    store = store_for(url)
    job_id = ok(admin(url, "inject", stdin=b"secret image bytes"))["job_id"]
    (delivery,) = store.read("worker-7", block_ms=100)
    store.start(delivery, "worker-7")
    result = admin(url, "job", job_id)
    view = ok(result)
    assert view == {**(store.get(job_id).view()), "worker": "worker-7"}  # type: ignore[union-attr]
    assert (view["status"], view["attempts"]) == ("running", 1)
    assert b"secret image bytes" not in result.stdout and "image" not in view


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job-id"])
def test_job_refuses_an_unknown_id(url: str, job_id: str) -> None:
    refused(admin(url, "job", job_id), 1)


def test_unreachable_redis_exits_2(tmp_path: Path) -> None:
    message = refused(admin("redis://127.0.0.1:1/0", "stats"), 2)
    assert "unreachable" in message


@pytest.mark.parametrize("password", ["", "wrong-password"], ids=["none", "wrong"])
def test_a_missing_or_wrong_password_exits_2_without_showing_it(redis_ep: Endpoint, password: str) -> None:
    auth = f":{password}@" if password else ""
    message = refused(admin(f"redis://{auth}127.0.0.1:{redis_ep.port}/0", "stats"), 2)
    assert "credentials" in message
    assert "wrong-password" not in message and PASSWORD not in message


def test_bad_settings_exit_2(url: str) -> None:
    refused(admin(url, "stats", env={"OCR_JOBS_STREAM": ""}), 2)


def test_it_reads_the_stream_and_group_from_the_settings(url: str) -> None:
    env = {"OCR_JOBS_STREAM": "other:jobs", "OCR_JOBS_GROUP": "other-workers"}
    ok(admin(url, "inject", stdin=b"x", env=env))
    assert ok(admin(url, "stats", env=env))["lag"] == 1
    assert ok(admin(url, "stats"))["entries_added"] == 0
    groups = store_for(url).redis.xinfo_groups("other:jobs")
    assert [g["name"] for g in groups] == [b"other-workers"]  # type: ignore[union-attr]
