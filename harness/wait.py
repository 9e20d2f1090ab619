"""The one wait helper: every wait in the project has a deadline, an interval and a last observation.

``until`` polls ``probe`` until ``accept(value)`` holds ("within N seconds": eventually);
``holds_for`` polls until the window ends and fails at the first value that breaks the condition
("for N seconds": consistently). Both raise :class:`~harness.errors.WaitTimeout` whose message carries
the last value observed, so a failure says what the system looked like.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness.errors import WaitTimeout

T = TypeVar("T")


@dataclass
class Observation(Generic[T]):
    """What a wait saw: every (elapsed seconds, value) pair, and the last value."""

    samples: list[tuple[float, T]] = field(default_factory=list)

    @property
    def last(self) -> T | None:
        return self.samples[-1][1] if self.samples else None


def _probe(probe: Callable[[], T]) -> T | Exception:
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a failing probe is an observation, not the end of the wait
        return exc


def until(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Observation[T]:
    """Poll ``probe`` until ``accept`` holds for its value; raise WaitTimeout at the deadline."""
    if timeout <= 0 or interval <= 0:
        raise ValueError("timeout and interval must be positive")
    obs: Observation[T] = Observation()
    start = clock()
    while True:
        value = _probe(probe)
        elapsed = clock() - start
        obs.samples.append((elapsed, value))  # type: ignore[arg-type]
        if not isinstance(value, Exception) and accept(value):
            return obs
        if elapsed >= timeout:
            raise WaitTimeout(what, timeout, value)
        sleep(min(interval, max(timeout - elapsed, 0.0)) or interval)


def holds_for(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    duration: float,
    interval: float = 0.5,
    what: str = "condition",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Observation[T]:
    """Poll ``probe`` for ``duration`` seconds; raise WaitTimeout as soon as ``accept`` fails."""
    if duration <= 0 or interval <= 0:
        raise ValueError("duration and interval must be positive")
    obs: Observation[T] = Observation()
    start = clock()
    while True:
        value = _probe(probe)
        elapsed = clock() - start
        obs.samples.append((elapsed, value))  # type: ignore[arg-type]
        if isinstance(value, Exception) or not accept(value):
            raise WaitTimeout(f"{what} to hold for {duration:g}s (broke at {elapsed:.1f}s)", duration, value)
        if elapsed >= duration:
            return obs
        sleep(min(interval, duration - elapsed) or interval)
