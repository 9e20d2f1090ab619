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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import CommandFailed, HarnessError

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
    total = round(rate * seconds)
    result = PacedResult()
    lock = threading.Lock()
    start = time.monotonic()

    def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing to a schedule, not waiting for a condition
        sent_at = time.monotonic() - start
        try:
            outcome = send()
        except Exception:  # noqa: BLE001 - a transport error is an observation (status 0)
            outcome = (0, "transport")
        status, kind = outcome if isinstance(outcome, tuple) else (outcome, "")
        answer = Answer(round(sent_at, 3), status, kind, round(time.monotonic() - start - sent_at, 4))
        with lock:
            result.answers.append(answer)

    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        list(pool.map(one, range(total)))
    result.answers.sort(key=lambda a: a.at)
    return result


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
