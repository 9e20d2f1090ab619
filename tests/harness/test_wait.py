import pytest

from harness import wait
from harness.errors import WaitTimeout


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_until_returns_when_accepted() -> None:
    values = iter([1, 2, 3, 4])
    clock = FakeClock()
    obs = wait.until(lambda: next(values), lambda v: v >= 3, timeout=10, interval=1, clock=clock, sleep=clock.sleep)
    assert obs.last == 3 and len(obs.samples) == 3


def test_until_times_out_with_last_observation() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as info:
        wait.until(
            lambda: "replicas=1",
            lambda v: v == "replicas=3",
            timeout=5,
            interval=1,
            what="scale out",
            clock=clock,
            sleep=clock.sleep,
        )
    assert "scale out" in str(info.value) and "replicas=1" in str(info.value)
    assert info.value.last_seen == "replicas=1"


def test_until_treats_probe_errors_as_observations() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def probe() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("refused")
        return 7

    assert wait.until(probe, lambda v: v == 7, timeout=10, interval=1, clock=clock, sleep=clock.sleep).last == 7


def test_until_reports_last_error() -> None:
    clock = FakeClock()

    def probe() -> int:
        raise ConnectionError("connection refused")

    with pytest.raises(WaitTimeout, match="connection refused"):
        wait.until(probe, lambda v: True, timeout=2, interval=1, clock=clock, sleep=clock.sleep)


def test_holds_for_passes_when_condition_holds_throughout() -> None:
    clock = FakeClock()
    obs = wait.holds_for(lambda: 0, lambda v: v == 0, duration=5, interval=1, clock=clock, sleep=clock.sleep)
    assert len(obs.samples) == 6 and clock.now == 5


def test_holds_for_fails_at_first_break() -> None:
    values = iter([0, 0, 429, 0, 0, 0, 0])
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as info:
        wait.holds_for(lambda: next(values), lambda v: v == 0, duration=5, interval=1, clock=clock, sleep=clock.sleep)
    assert info.value.last_seen == 429 and clock.now == 2


def test_nonsense_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        wait.until(lambda: 1, bool, timeout=0)
