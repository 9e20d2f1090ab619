"""Load: a paced client for exact rates (rate limits), and locust in its own process for sustained load.

locust is never imported here: importing it monkey-patches sockets and threads (gevent) for the whole
process. It runs as ``python -m locust`` in a child process and its CSV statistics are read back.
Load goes only to loopback unless ``HARNESS_ALLOW_REMOTE_LOAD=1`` (a user's own cluster).
"""

from __future__ import annotations

import csv
import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from harness.errors import CommandFailed, HarnessError

T = TypeVar("T")

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


class RemoteLoadRefused(HarnessError):
    pass


def ensure_loopback(url: str) -> None:
    """Refuse to send load anywhere but this machine, unless the user says otherwise."""
    host = urlsplit(url).hostname or ""
    if os.environ.get("HARNESS_ALLOW_REMOTE_LOAD") == "1":
        return
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise RemoteLoadRefused(f"refusing to send load to {host!r}: not loopback (set HARNESS_ALLOW_REMOTE_LOAD=1)")


@dataclass(frozen=True)
class Answer:
    """One paced request: when it was sent (seconds from the start, as sent, not as scheduled), its status
    (0 for a transport error), who answered (``kind``, what the sender's classifier said) and how long the
    answer took."""

    at: float
    status: int
    kind: str = ""
    seconds: float = 0.0


@dataclass
class PacedResult:
    answers: list[Answer] = field(default_factory=list)

    @property
    def sent(self) -> list[tuple[float, int]]:
        """Each request's send time and status, in the order sent."""
        return [(a.at, a.status) for a in self.answers]

    def count(self, status: int) -> int:
        return sum(1 for a in self.answers if a.status == status)

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for a in self.answers:
            out[a.status] = out.get(a.status, 0) + 1
        return dict(sorted(out.items()))

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.answers:
            out[a.kind] = out.get(a.kind, 0) + 1
        return dict(sorted(out.items()))

    def latencies(self, kind: str) -> list[float]:
        return sorted(a.seconds for a in self.answers if a.kind == kind)


class Pacer(Generic[T]):
    """The one pacer of the features, the rollout and the benchmarks: ``observe`` called from background
    threads on a schedule whatever the answers take (at most ``max_in_flight`` outstanding): ``rate`` times a
    second until :meth:`stop` or ``total`` calls, or at the given ``offsets`` (seconds from the start).
    ``observe(index, sent_at)`` makes the index-th request and returns what to keep of it (``sent_at``:
    seconds from the start, as sent)."""

    def __init__(
        self,
        observe: Callable[[int, float], T],
        *,
        rate: float = 0.0,
        max_in_flight: int = 16,
        total: int | None = None,
        offsets: Sequence[float] | None = None,
    ) -> None:
        if offsets is None and rate <= 0:
            raise ValueError("rate must be positive")
        self.observe, self.rate = observe, rate
        self.offsets = list(offsets) if offsets is not None else None
        self.total = len(self.offsets) if self.offsets is not None else total
        self.observations: list[T] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._start = 0.0
        self._threads: list[threading.Thread] = []
        self._scheduler = threading.Thread(target=self._run, name="pacer", daemon=True)

    def _offset(self, n: int) -> float:
        return self.offsets[n] if self.offsets is not None else n / self.rate

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def start(self, at: float | None = None) -> Pacer[T]:
        """Begin now, or at ``at`` (a ``time.monotonic()`` instant)."""
        self._start = time.monotonic() if at is None else at
        self._scheduler.start()
        return self

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set() and (self.total is None or sent < self.total):
            # Pacing to a schedule (the next send time), not waiting for a condition.
            if self._stop.wait(max(self._start + self._offset(sent) - time.monotonic(), 0.0)):
                break
            self._slots.acquire()
            thread = threading.Thread(target=self._one, args=(sent,), daemon=True)
            thread.start()
            self._threads.append(thread)
            sent += 1

    def _one(self, index: int) -> None:
        try:
            observation = self.observe(index, self.elapsed())
        finally:
            self._slots.release()
        with self._lock:
            self.observations.append(observation)

    def snapshot(self) -> list[T]:
        with self._lock:
            return list(self.observations)

    def wait(self, timeout: float | None = None) -> list[T]:
        """Wait (up to ``timeout`` s in all) until every call of a pacer with ``total`` or ``offsets`` has been
        made and answered; every observation so far."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0.0)

        self._scheduler.join(left())
        for thread in list(self._threads):
            thread.join(left())
        return self.snapshot()

    def stop(self, timeout: float = 60.0) -> list[T]:
        """Stop sending, wait for the answers outstanding (up to ``timeout`` s); every observation."""
        self._stop.set()
        return self.wait(timeout)


def paced(
    send: Callable[[], int | tuple[int, str]], *, rate: float, seconds: float, max_in_flight: int = 256
) -> PacedResult:
    """Call ``send`` ``rate`` times a second for ``seconds`` seconds, on schedule, whatever it returns.

    ``send`` returns the status, or the status and what kind of answer it was (its classification). Exactly
    ``round(rate * seconds)`` calls are made; a slow answer does not delay the next send (up to
    ``max_in_flight`` answers outstanding at once). A transport error is status 0, kind ``transport``.
    """
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")

    def observe(_: int, sent_at: float) -> Answer:
        began = time.monotonic()
        try:
            outcome = send()
        except Exception:  # noqa: BLE001 - a transport error is an observation (status 0)
            outcome = (0, "transport")
        status, kind = outcome if isinstance(outcome, tuple) else (outcome, "")
        return Answer(round(sent_at, 3), status, kind, round(time.monotonic() - began, 4))

    pacer = Pacer(observe, rate=rate, max_in_flight=max_in_flight, total=round(rate * seconds)).start()
    return PacedResult(sorted(pacer.wait(), key=lambda a: a.at))


@dataclass(frozen=True)
class LocustStats:
    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    rps: float
    csv_prefix: Path

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def locust_argv(
    url: str, *, users: int, spawn_rate: float, seconds: int, csv_prefix: Path, locustfile: Path = LOCUSTFILE
) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", f"{spawn_rate:g}", "--run-time", f"{seconds}s",
        "--host", url, "--csv", str(csv_prefix), "--only-summary", "--stop-timeout", "30",
        "--exit-code-on-error", "0",
    ]  # fmt: skip


def parse_locust_stats(csv_prefix: Path) -> LocustStats:
    path = Path(f"{csv_prefix}_stats.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    total = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if total is None:
        raise HarnessError(f"no Aggregated row in {path}")
    return LocustStats(
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
        median_ms=float(total["Median Response Time"] or 0),
        p95_ms=float(total.get("95%") or 0),
        rps=float(total["Requests/s"] or 0),
        csv_prefix=csv_prefix,
    )


class LocustRun:
    """locust running headless in a child process; :meth:`finish` waits for it and reads its stats."""

    def __init__(self, url: str, *, users: int, seconds: int, out_dir: Path, spawn_rate: float | None = None,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        ensure_loopback(url)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.seconds = seconds
        self.out_dir = out_dir
        self.prefix = out_dir / "locust"
        self.argv = locust_argv(
            url, users=users, spawn_rate=spawn_rate or users, seconds=seconds, csv_prefix=self.prefix
        )
        self._log = (out_dir / "locust.log").open("w")
        self._proc = subprocess.Popen(
            self.argv, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        """End the run now (a scenario that failed before "the load ends")."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()

    def finish(self, *, grace: float = 90.0) -> LocustStats:
        """Wait for the run to end (its own --run-time plus ``grace``), then parse its CSV statistics."""
        try:
            code = self._proc.wait(timeout=self.seconds + grace)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(timeout=10)
        finally:
            self._log.close()
        if code != 0:
            raise CommandFailed(self.argv, code, (self.out_dir / "locust.log").read_text()[-2000:])
        return parse_locust_stats(self.prefix)
