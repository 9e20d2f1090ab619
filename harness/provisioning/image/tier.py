"""The image tier: build the service image, then prove that it serves as production runs it.

The checks, in order; a failed check stops those after it, and the run still ends with the evidence:

1. the image: fixed non-root default user, OCI and model labels, ``python -m service``, port 8080
2. the image holds no compiler, and its installed packages are exactly the lock's ``service`` extra
3. the API starts on a read-only root filesystem (``/tmp`` the only writable place) and ``/readyz`` is 200
4. ``POST /predict`` reads the word in a generated PNG, with the model version the label names
5. the container's processes do not run as root
6. a worker container, same image, takes a job through a local Redis: ``POST /jobs`` -> 202, then
   ``GET /jobs/{id}`` -> ``succeeded`` with the word
7. SIGTERM (``docker stop``) ends both containers with exit code 0 within the grace period

The artifacts directory receives the build logs, each container's log (taken before the containers are
removed) and ``report.json``; the console gets one line per check and a closing ``image: N passed, N failed``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import commands, wait
from harness.errors import CommandFailed, HarnessError
from harness.ports import free_port
from harness.provisioning import lock
from harness.provisioning.image.build import BuildResult
from harness.provisioning.image.docker import (
    ContainerSpec,
    docker,
    exec_argv,
    inspect_argv,
    logs_argv,
    oneshot_argv,
    rm_argv,
    run_argv,
    stop_argv,
)
from harness.provisioning.image.redis import local_redis
from harness.provisioning.samples import text_line

WORD = "Invoice"
USER_ID = 10001
STOP_GRACE_S = 30
READY_TIMEOUT_S = 180.0
JOB_TIMEOUT_S = 120.0
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "ld", "make")
REQUIRED_LABELS = (
    "org.opencontainers.image.source",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.ocr-platform.model.name",
    "org.ocr-platform.model.version",
)
MODEL_LABEL = "org.ocr-platform.model.version"
# Run in the image: every installed distribution (name -> version) and the interpreter's marker environment.
INSTALLED_SCRIPT = (
    "import importlib.metadata as m, json; from packaging.markers import default_environment as e; "
    "print(json.dumps({'installed': {d.metadata['Name']: d.version for d in m.distributions()}, "
    "'environment': e()}))"
)


class CheckFailed(HarnessError):
    """One check of the image tier saw something other than what the image promises."""


def word_png(word: str = WORD) -> bytes:
    """A PNG of ``word``, black on white in Pillow's default font at 28 px (about 130 x 50 for the word)."""
    return text_line(word, font_size=28).encode("PNG")


def process_uids(status: str) -> tuple[int, ...]:
    """The real, effective, saved and filesystem uids from a /proc/<pid>/status text."""
    match = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", status, re.MULTILINE)
    if match is None:
        raise CheckFailed(f"no Uid line in /proc/1/status: {status[:200]!r}")
    return tuple(int(g) for g in match.groups())


def contains_word(text: str, word: str = WORD) -> bool:
    """OCR reads the word, whatever the case it gives (the recogniser sometimes drops capitals)."""
    return word.lower() in text.lower()


def label_problems(labels: dict[str, str] | None, *, version: str, wheelhouse: bool) -> list[str]:
    """What is wrong with an image's labels: missing keys, a version other than the project's."""
    labels = labels or {}
    problems = [f"no label {key}" for key in REQUIRED_LABELS if key not in labels]
    if labels.get("org.opencontainers.image.version", version) != version:
        problems.append(f"version label {labels['org.opencontainers.image.version']!r}, project is {version!r}")
    if wheelhouse and labels.get(MODEL_LABEL) in ("", "unknown"):
        problems.append(f"{MODEL_LABEL} is not set")
    return problems


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class TierReport:
    image: str
    checks: list[Check] = field(default_factory=list)
    build: BuildResult | None = None

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def failed(self) -> int:
        return sum(not c.passed for c in self.checks)

    def closing_line(self) -> str:
        return f"image: {self.passed} passed, {self.failed} failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "checks": [asdict(c) for c in self.checks],
            "build": None if self.build is None else asdict(self.build),
            "passed": self.passed,
            "failed": self.failed,
        }


class ImageTier:
    """Runs the checks against ``image``; containers and Redis live only for the run."""

    def __init__(
        self,
        image: str,
        artifacts: Path,
        *,
        version: str,
        wheelhouse: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.image = image
        self.artifacts = artifacts
        self.version = version
        self.wheelhouse = wheelhouse
        self.say = say
        self.run_id = uuid.uuid4().hex[:8]
        self.api_port = free_port()
        self.worker_port = free_port()
        self.containers: list[str] = []
        self.labels: dict[str, str] = {}
        self.api = ""
        self.worker = ""

    # -- plumbing ---------------------------------------------------------------------------------

    def _start(self, role: str, env: dict[str, str], command: tuple[str, ...] = ()) -> str:
        name = f"ocr-image-{role}-{self.run_id}"
        spec = ContainerSpec(name=name, image=self.image, command=command, env=env, user=str(USER_ID))
        self.containers.append(name)
        commands.run(run_argv(spec), timeout=120)
        return name

    def _state(self, name: str) -> str:
        return commands.run(inspect_argv(name, "{{.State.Status}} {{.State.ExitCode}}"), timeout=60).strip()

    def _fail_with_logs(self, name: str, message: str) -> CheckFailed:
        logs = self._logs(name)
        return CheckFailed(f"{message}; last log lines of {name}:\n{logs[-3000:]}")

    def _logs(self, name: str) -> str:
        # docker logs replays the container's stderr on its own stderr: merge them, in order.
        try:
            return commands.run(logs_argv(name), timeout=60, merge_stderr=True)
        except CommandFailed as exc:
            return f"(no logs: {exc})"

    def _wait_http_ok(self, name: str, url: str, what: str, timeout: float) -> None:
        """Until ``url`` answers 200, or fail at once if the container stops."""

        def probe() -> dict[str, object]:
            state = self._state(name)
            if not state.startswith("running"):
                return {"container": state}
            try:
                return {"container": state, "status": httpx.get(url, timeout=5).status_code}
            except httpx.HTTPError as exc:
                return {"container": state, "status": f"{type(exc).__name__}: {exc}"}

        obs = wait.until(
            probe,
            lambda seen: seen.get("status") == 200 or not str(seen["container"]).startswith("running"),
            timeout=timeout,
            interval=0.5,
            what=what,
        )
        last = obs.last or {}
        if last.get("status") != 200:
            raise self._fail_with_logs(name, f"{name} stopped before {what}: {last['container']}")

    def _collect_logs(self) -> None:
        for name in self.containers:
            role = name.split("-")[2]  # ocr-image-<role>-<run id>
            (self.artifacts / f"{role}.log").write_text(self._logs(name))

    def _remove_containers(self) -> None:
        if self.containers:
            try:
                commands.run(rm_argv(*self.containers), timeout=120)
            except HarnessError as exc:
                self.say(f"warning: could not remove the test containers: {exc}")

    # -- the checks -------------------------------------------------------------------------------

    def check_image(self) -> str:
        config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", self.image))
        user = str(config.get("User") or "")
        if user.split(":")[0] != str(USER_ID):
            raise CheckFailed(f"default user is {user or 'root (unset)'!r}, not {USER_ID}")
        if config.get("Cmd") != ["python", "-m", "service"]:
            raise CheckFailed(f"command is {config.get('Cmd')!r}, not ['python', '-m', 'service']")
        if "8080/tcp" not in (config.get("ExposedPorts") or {}):
            raise CheckFailed(f"exposes {sorted(config.get('ExposedPorts') or {})}, not 8080/tcp")
        self.labels = config.get("Labels") or {}
        problems = label_problems(self.labels, version=self.version, wheelhouse=self.wheelhouse)
        if problems:
            raise CheckFailed("; ".join(problems))
        return f"user {user}, version {self.version}, model {self.labels.get(MODEL_LABEL)}"

    def check_no_compiler(self) -> str:
        script = "for c in " + " ".join(COMPILERS) + '; do command -v "$c" || true; done'
        found = commands.run(oneshot_argv(self.image, ["sh", "-c", script]), timeout=120).split()
        if found:
            raise CheckFailed(f"the image holds build tools: {', '.join(found)}")
        return f"none of {', '.join(COMPILERS)}"

    def check_locked_set(self) -> str:
        found = json.loads(commands.run(oneshot_argv(self.image, ["python", "-c", INSTALLED_SCRIPT]), timeout=120))
        pins = lock.parse_requirements(lock.service_requirements())
        expected = lock.expected_set(pins, found["environment"])
        differences = lock.set_difference(expected, found["installed"])
        if differences:
            raise CheckFailed(f"the image's packages are not the locked set: {'; '.join(differences)}")
        return f"{len(expected)} packages, each at the locked version, nothing else"

    def check_api_ready(self, redis_url: str) -> str:
        env = {"OCR_HOST": "127.0.0.1", "OCR_PORT": str(self.api_port), "OCR_REDIS_URL": redis_url}
        start = time.monotonic()
        self.api = self._start("api", env)
        self._wait_http_ok(
            self.api,
            f"http://127.0.0.1:{self.api_port}/readyz",
            f"GET /readyz 200 on 127.0.0.1:{self.api_port}",
            READY_TIMEOUT_S,
        )
        return f"ready in {time.monotonic() - start:.1f}s, --read-only --tmpfs /tmp --user {USER_ID}"

    def check_predict(self) -> str:
        url = f"http://127.0.0.1:{self.api_port}/predict"
        files = {"file": ("invoice.png", word_png(), "image/png")}
        response = httpx.post(url, files=files, timeout=60)
        if response.status_code != 200:
            raise CheckFailed(f"POST /predict answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        if not contains_word(str(body.get("text", ""))):
            raise CheckFailed(f"POST /predict read {body.get('text')!r}, not {WORD!r}")
        served = (body.get("model") or {}).get("version")
        labelled = self.labels.get(MODEL_LABEL)
        if labelled not in (None, "", "unknown") and served != labelled:
            raise CheckFailed(f"the service reports model {served!r}, the image's label says {labelled!r}")
        return f"read {body['text']!r} in {body.get('latency_ms', 0):.0f} ms, model {served}"

    def check_not_root(self) -> str:
        uid = commands.run(exec_argv(self.api, "id", "-u"), timeout=60).strip()
        uids = process_uids(commands.run(exec_argv(self.api, "cat", "/proc/1/status"), timeout=60))
        if uid != str(USER_ID) or set(uids) != {USER_ID}:
            raise CheckFailed(f"`id -u` says {uid}, PID 1 runs with uids {uids}; expected {USER_ID}")
        return f"id -u = {uid}; PID 1 uids {uids}"

    def check_job(self, redis_url: str) -> str:
        env = {
            "OCR_HOST": "127.0.0.1",
            "OCR_REDIS_URL": redis_url,
            "OCR_WORKER_PORT": str(self.worker_port),
        }
        self.worker = self._start("worker", env, ("python", "-m", "service.jobs.worker"))
        self._wait_http_ok(
            self.worker,
            f"http://127.0.0.1:{self.worker_port}/healthz",
            f"the worker's GET /healthz 200 on 127.0.0.1:{self.worker_port}",
            READY_TIMEOUT_S,
        )
        base = f"http://127.0.0.1:{self.api_port}"
        files = {"file": ("invoice.png", word_png(), "image/png")}
        response = httpx.post(f"{base}/jobs", files=files, timeout=60)
        if response.status_code != 202:
            raise CheckFailed(f"POST /jobs answered {response.status_code}: {response.text[:500]}")
        job_id = response.json()["job_id"]
        start = time.monotonic()

        def status() -> dict[str, Any]:
            return dict(httpx.get(f"{base}/jobs/{job_id}", timeout=10).json())

        obs = wait.until(
            status,
            lambda job: job.get("status") in ("succeeded", "failed"),
            timeout=JOB_TIMEOUT_S,
            interval=0.5,
            what=f"job {job_id} to finish",
        )
        job = obs.last or {}
        text = str((job.get("result") or {}).get("text", ""))
        if job.get("status") != "succeeded" or not contains_word(text):
            raise self._fail_with_logs(self.worker, f"job {job_id} ended {job}")
        return f"job {job_id} succeeded in {time.monotonic() - start:.1f}s, read {text!r}"

    def check_admin(self, redis_url: str) -> str:
        """The queue admin command, as a cluster runs it through ``kubectl exec``: the image's Python and
        dependencies alone, one JSON object on stdout."""
        argv = oneshot_argv(
            self.image,
            ["python", "-m", "service.jobs.admin", "stats"],
            user=str(USER_ID),
            network="host",
            env={"OCR_REDIS_URL": redis_url},
        )
        out = commands.run(argv, timeout=120)
        stats = json.loads(out)  # all of stdout: anything else printed there would break the harness
        done = (stats.get("entries_added", 0) >= 1, stats.get("lag"), stats.get("pending"))
        if done != (True, 0, 0):
            raise CheckFailed(f"stats after the job should show it added and nothing waiting: {stats}")
        return f"stats: {out.strip()}"

    def check_sigterm(self) -> str:
        results = []
        for name in (self.worker, self.api):
            start = time.monotonic()
            commands.run(stop_argv(name, grace_s=STOP_GRACE_S), timeout=STOP_GRACE_S + 60)
            took = time.monotonic() - start
            code = commands.run(inspect_argv(name, "{{.State.ExitCode}}"), timeout=60).strip()
            if code != "0" or took >= STOP_GRACE_S:
                raise self._fail_with_logs(name, f"{name} exited {code} after {took:.1f}s of SIGTERM")
            results.append(f"{name.split('-')[2]} exit 0 in {took:.1f}s")
        return ", ".join(results)

    # -- the run ----------------------------------------------------------------------------------

    def run(self, report: TierReport) -> TierReport:
        """Run every check in order into ``report``; stop at the first failure."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            redis = stack.enter_context(local_redis(self.artifacts / "redis.log"))
            stack.callback(self._remove_containers)
            stack.callback(self._collect_logs)  # before the removal: callbacks run last-in, first-out
            steps: list[tuple[str, Callable[[], str]]] = [
                ("image: non-root user, labels, command, port", self.check_image),
                ("image holds no compiler", self.check_no_compiler),
                ("image's packages are the locked set", self.check_locked_set),
                ("API ready on a read-only root filesystem", lambda: self.check_api_ready(redis.url)),
                (f"POST /predict reads {WORD!r}", self.check_predict),
                ("the container's processes are not root", self.check_not_root),
                ("a worker container sees a job through", lambda: self.check_job(redis.url)),
                ("python -m service.jobs.admin stats in the image", lambda: self.check_admin(redis.url)),
                ("SIGTERM stops both with exit code 0", self.check_sigterm),
            ]
            for name, step in steps:
                start = time.monotonic()
                try:
                    detail = step()
                # An HTTP error or a malformed answer is the image failing the check, not the harness.
                except (HarnessError, httpx.HTTPError, ValueError, KeyError) as exc:
                    report.checks.append(Check(name, False, str(exc), time.monotonic() - start))
                    self.say(f"  FAIL  {name}: {exc}")
                    break
                report.checks.append(Check(name, True, detail, time.monotonic() - start))
                self.say(f"  ok    {name}: {detail}")
        return report


def write_report(report: TierReport, artifacts: Path) -> Path:
    path = artifacts / "report.json"
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path
