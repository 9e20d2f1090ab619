"""Real service processes on loopback for the HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.acceptance.components import Endpoint, start_service


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def service(logs_dir: Path) -> Iterator[Endpoint]:
    """The service with its default settings."""
    endpoint = start_service(logs_dir, name="service-default")
    yield endpoint
    endpoint.process.stop()


@pytest.fixture(scope="session")
def tight_service(logs_dir: Path) -> Iterator[Endpoint]:
    """One model slot, no waiting line and a short deadline: overload and timeout are easy to reach."""
    endpoint = start_service(
        logs_dir,
        name="service-tight",
        env={"OCR_MAX_CONCURRENCY": "1", "OCR_MAX_QUEUE": "0", "OCR_REQUEST_TIMEOUT_S": "0.3"},
    )
    yield endpoint
    endpoint.process.stop()
