"""Running a provisioning plan: numbered steps with elapsed time, live output, a full log, resumable.

Each step prints ``[n/N] name`` when it starts and ``[n/N] done in 1m05s`` (or ``already done``) when it
ends; a long tool's output streams through with a heartbeat while it is silent. The full output goes to
``<log_dir>/provision.log``. ``from_step`` resumes a plan at a step number as ``harness plan`` prints it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from harness import commands
from harness.errors import CommandFailed, HarnessError
from harness.provisioning.plan import Probes, Step
from harness.provisioning.tools import resolve

RETRY_WAIT_S = 10


@dataclass
class StepResult:
    number: int
    name: str
    outcome: str  # "ran", "already done", "skipped (before --from-step)", "planned"
    seconds: float


def _retryable(step: Step) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        return isinstance(exc, CommandFailed) and any(f in exc.stderr.lower() for f in step.retry_on)

    return check


def run_command(step: Step, log: Path, say: Callable[[str], None]) -> None:
    argv = [resolve(step.argv[0]), *step.argv[1:]]
    for attempt in Retrying(
        stop=stop_after_attempt(max(step.attempts, 1)),
        wait=wait_fixed(RETRY_WAIT_S),
        retry=retry_if_exception(_retryable(step)),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                say(f"    retry {attempt.retry_state.attempt_number}/{step.attempts}")
            commands.run_logged(argv, log=log, timeout=step.timeout_s, say=lambda line: say(f"    {line}"))


def run_plan(
    steps: Sequence[Step],
    *,
    log_dir: Path,
    dry_run: bool = False,
    from_step: int = 1,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
) -> list[StepResult]:
    """Run the steps in order; the first failure stops the plan with the tool's output in the error."""
    if not 1 <= from_step <= max(len(steps), 1):
        raise HarnessError(f"--from-step {from_step}: the plan has steps 1 to {len(steps)}")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "provision.log"
    total = len(steps)
    results: list[StepResult] = []
    began = clock()
    for number, step in enumerate(steps, 1):
        head = f"[{number}/{total}]"
        if dry_run:
            say(f"{head} {step.name}: {step.describe()}")
            results.append(StepResult(number, step.name, "planned", 0.0))
            continue
        if number < from_step:
            results.append(StepResult(number, step.name, "skipped (before --from-step)", 0.0))
            continue
        start = clock()
        if step.done is not None and step.done():
            say(f"{head} {step.name}: already done")
            results.append(StepResult(number, step.name, "already done", 0.0))
            continue
        say(f"{head} {step.name}  (at {commands.format_elapsed(start - began)})")
        if step.action is not None:
            step.action()
        elif step.argv:
            run_command(step, log, say)
        seconds = clock() - start
        say(f"{head} done in {commands.format_elapsed(seconds)}")
        results.append(StepResult(number, step.name, "ran", round(seconds, 1)))
    if not dry_run:
        (log_dir / "steps.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return results


# -- probes that make `up` idempotent ---------------------------------------------------------------------


def kind_clusters() -> list[str]:
    out = commands.run([resolve("kind"), "get", "clusters"], timeout=60, merge_stderr=False)
    return [line.strip() for line in out.splitlines() if line.strip()]


def _helm_status(context: str, namespace: str, release: str) -> dict[str, Any] | None:
    """``helm status -o json`` of a release; None when there is no such release."""
    try:
        out = commands.run(
            [resolve("helm"), "status", release, "--namespace", namespace, "--kube-context", context, "-o", "json"],
            timeout=60,
        )
    except CommandFailed:
        return None
    status: dict[str, Any] = json.loads(out)
    return status


def helm_release_matches(context: str, namespace: str, release: str, description: str) -> bool:
    """A release deployed by the very same command (its fingerprint is the release description)."""
    info = (_helm_status(context, namespace, release) or {}).get("info", {})
    return bool(info.get("status") == "deployed" and info.get("description") == description)


def helm_release_exists(context: str, namespace: str, release: str) -> bool:
    """A release of that name is installed, whatever its command (no cluster: none is)."""
    return _helm_status(context, namespace, release) is not None


LIVE_PROBES = Probes(
    cluster_exists=lambda cluster: cluster in kind_clusters(),
    release_matches=helm_release_matches,
    release_exists=helm_release_exists,
)
