"""The processes harness.acceptance.components starts are configured as the cluster's are."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
import redis

from harness.acceptance.components import start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")


def test_a_bounded_redis_refuses_writes_past_maxmemory_and_evicts_nothing(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(16)
    endpoint = start_redis(tmp_path, tmp_path / "data", password=password, maxmemory="2mb")
    try:
        client = redis.Redis(host=endpoint.host, port=endpoint.port, password=password)
        assert client.config_get("maxmemory") == {"maxmemory": str(2 * 2**20)}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("first", b"x" * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(64):
                client.set(f"filler:{i}", b"x" * 128 * 1024)
        assert client.get("first") == b"x" * 1024, "noeviction must keep every key already written"
    finally:
        endpoint.process.stop()
