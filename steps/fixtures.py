"""Fixtures every step can ask for: the target, the evidence folder, a client that never retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.bdd import EVIDENCE_KEY, RUN_KEY, TARGET_KEY, scenario_names
from harness.evidence import ScenarioEvidence
from harness.load import LocustRun
from harness.targets import Target, TargetOptions, target_class


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The platform, started once per run and stopped (unless --keep) after the last scenario."""
    config = request.config
    run = config.stash[RUN_KEY]
    options = TargetOptions(
        artifacts=run.root,
        keep=bool(config.getoption("keep")),
        kube_context=config.getoption("kube_context"),
    )
    platform = target_class(config.getoption("target"))(options)
    config.stash[TARGET_KEY] = platform
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> ScenarioEvidence:
    feature, scenario = scenario_names(request.node) or (Path(str(request.node.path)).stem, request.node.name)
    evidence = request.config.stash[RUN_KEY].scenario(feature, scenario)
    request.node.stash[EVIDENCE_KEY] = evidence
    return evidence


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An HTTP client that never retries and never follows redirects: a 429 or 503 is seen as it is."""
    transport = httpx.HTTPTransport(retries=0)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(60.0), follow_redirects=False) as c:
        yield c


@pytest.fixture
def ctx() -> dict[str, object]:
    """What one scenario's steps hand to each other (responses, counters, images)."""
    return {}


@pytest.fixture
def load_runs() -> Iterator[list[LocustRun]]:
    """Load started by a scenario; whatever still runs when the scenario ends (say, it failed) is stopped."""
    runs: list[LocustRun] = []
    yield runs
    for run in runs:
        run.stop()
