"""The shared vocabulary: bringing the platform up, sending images, and the words for time.

"within N seconds" means eventually (poll until true or the deadline); "for N seconds" means
consistently (poll and fail at the first counter-example). Both go through :mod:`harness.wait`,
and both record their timeline in the scenario's evidence.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx
from pytest_bdd import given, parsers

from harness import wait
from harness.acceptance.evidence import ScenarioEvidence, slug
from harness.acceptance.targets import Cluster, Gateway, Rollout, Target, need
from harness.provisioning import samples
from harness.provisioning.profiles import profile as named

T = TypeVar("T")


class _Timeline(Generic[T]):
    """Wraps a probe so every observation lands in the evidence, pass or fail, with the time it was made
    (seconds since the wait began and wall-clock time) and the threshold the step asserts, so a report can
    draw the line the values had to cross."""

    def __init__(
        self, evidence: ScenarioEvidence, what: str, probe: Callable[[], T], *, mode: str, seconds: float,
        threshold: float | None,
    ) -> None:  # fmt: skip
        self.evidence, self.what, self.probe = evidence, what, probe
        self.mode, self.seconds, self.threshold = mode, seconds, threshold
        self.start = time.monotonic()
        self.started_at = time.time()
        self.observed: list[dict[str, Any]] = []

    def __call__(self) -> T:
        try:
            value = self.probe()
        except Exception as exc:
            self.observed.append(self._sample({"error": f"{type(exc).__name__}: {exc}"[:300]}))
            raise
        self.observed.append(self._sample(value))
        return value

    def _sample(self, value: Any) -> dict[str, Any]:
        return {"t": round(time.monotonic() - self.start, 2), "at": round(time.time(), 3), "value": value}

    def save(self) -> None:
        self.evidence.write_json(
            f"timeline-{slug(self.what, 60)}",
            {
                "what": self.what,
                "mode": self.mode,  # "within": eventually; "for": consistently
                "seconds": self.seconds,
                "threshold": self.threshold,
                "started_at": round(self.started_at, 3),
                "samples": self.observed,
            },
        )


def eventually(
    evidence: ScenarioEvidence,
    what: str,
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    seconds: float,
    interval: float = 0.5,
    threshold: float | None = None,
) -> T:
    """ "within N seconds": poll until ``accept`` holds; the timeline goes to the evidence."""
    timeline = _Timeline(evidence, what, probe, mode="within", seconds=seconds, threshold=threshold)
    try:
        obs = wait.until(timeline, accept, timeout=seconds, interval=interval, what=what)
    finally:
        timeline.save()
    return obs.last  # type: ignore[return-value]


def consistently(
    evidence: ScenarioEvidence,
    what: str,
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    seconds: float,
    interval: float = 0.5,
    threshold: float | None = None,
) -> None:
    """ "for N seconds": fail at the first observation that breaks the condition."""
    timeline = _Timeline(evidence, what, probe, mode="for", seconds=seconds, threshold=threshold)
    try:
        wait.holds_for(timeline, accept, duration=seconds, interval=interval, what=what)
    finally:
        timeline.save()


def watch(
    evidence: ScenarioEvidence, what: str, probe: Callable[[], T], *, seconds: float, interval: float = 3.0
) -> list[dict[str, Any]]:
    """ "for N seconds" as an action: look every ``interval`` until the time is up and keep every look (a look
    that failed is kept as ``{"error": ...}``); the Then that follows judges them. The timeline goes to the
    evidence."""
    timeline = _Timeline(evidence, what, probe, mode="for", seconds=seconds, threshold=None)
    deadline = time.monotonic() + seconds
    try:
        while True:
            with contextlib.suppress(Exception):  # a failed look is kept in the timeline as an error look
                timeline()
            if time.monotonic() >= deadline:
                break
            time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)) or interval)
    finally:
        timeline.save()
    return timeline.observed


def post_image(
    client: httpx.Client, url: str, data: bytes, *, headers: dict[str, str] | None = None, filename: str = "image.png"
) -> httpx.Response:
    return client.post(f"{url}/predict", files={"file": (filename, data)}, headers=headers or {})


def seconds_of(amount: str | int, unit: str) -> float:
    """ "5 minutes" -> 300.0; "90 seconds" -> 90.0."""
    return int(amount) * (60.0 if unit.startswith("minute") else 1.0)


def image_reading(text: str) -> samples.Sample:
    return samples.text_line(text)


@given("the platform is running")
def platform_running(target: Target, client: httpx.Client, evidence: ScenarioEvidence) -> Target:
    response = client.get(f"{target.service_url()}/readyz")
    evidence.record("readyz", {"status": response.status_code, "body": response.json()})
    assert response.status_code == 200, f"/readyz answered {response.status_code}: {response.text}"
    return target


@given(parsers.parse('the platform is deployed with the "{profile}" profile'))
def platform_profile(target: Target, client: httpx.Client, evidence: ScenarioEvidence, profile: str) -> Target:

    # The run deployed the smallest profile serving every selected scenario; it must serve this one too.
    deployed = target.profile.name if isinstance(target, Cluster) else None
    evidence.record("profile", {"asked": profile, "deployed": deployed})
    if deployed is not None:
        assert profile in named(deployed).serves, f"this run deployed the {deployed} profile, not {profile}"
    platform_running(target, client, evidence)
    # Each capability the profile gives that this target has, seen working now, not only declared.
    wanted = sorted(named(profile).capabilities & type(target).provides(target.options))
    probed = {capability: probe_capability(target, client, capability) for capability in wanted}
    evidence.record("capabilities_probed", probed)
    return target


def probe_capability(target: Target, client: httpx.Client, capability: str) -> str:
    """What shows ``capability`` working on ``target`` now; an AssertionError when it does not."""
    if capability == "gateway":
        answer = client.post(f"{need(target, Gateway).gateway_url()}/predict", files={"file": ("x.png", b"x")})
        assert answer.status_code == 403, f"the gateway let a request without an API key through: {answer.status_code}"
        return "a request without an API key is refused with 403"
    if capability == "ratelimit":
        described = need(target, Gateway).describe_gateway()
        assert described, "the target names no gateway that limits"
        return f"limited by {described}"
    if capability == "prometheus":
        # A Prometheus just started has not scraped yet: its first scrape is awaited, with a deadline.
        prom = target.prometheus()
        series = wait.until(
            lambda: prom.query("up == 1"), bool, timeout=60, interval=1, what="Prometheus scraping a target that is up"
        )
        return f"{len(series.last or [])} scrape targets up"
    if capability == "jobs":
        answer = client.get(f"{target.service_url()}/jobs/{'0' * 32}", headers=target.service_headers())
        assert answer.status_code == 404, f"the job store did not answer: GET /jobs/<unknown> {answer.status_code}"
        return "the job store answers (404 for an unknown job)"
    if capability == "k8s":
        ready = need(target, Rollout).replicas("predictor")
        assert ready >= 1, f"{ready} ready predictor replicas"
        return f"{ready} ready predictor replicas"
    return "declared by the target (no live probe)"
