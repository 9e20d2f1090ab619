"""The CI steps, defined once: ``.ci/run`` and the GitHub workflow both run ``python -m harness ci run``.

Each step is a list of commands run in the locked environment (``uv sync --locked --extra dev``, made by
``.ci/setup``), in the order below; a step fails on the first command that exits non-zero, and the run stops
there unless ``--keep-going``. Every run writes ``artifacts/ci/steps.json`` (step, seconds, exit code) and
ends with one line per step and ``ci: N passed, N failed``.

The order puts what the test step needs first: the CRDs that the manifest tests validate against, and the
venv of KServe's client that ``tests/oip`` drives; so the test step runs every test of ``tests/`` once
(the manifest, dashboard and KServe-client tests among them, required rather than skipped).

``python -m harness ci list`` prints the steps; ``run STEP...`` runs some of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.checks.manifests.crds import crd_dir_problem, default_crd_dir
from harness.provisioning.paths import REPO_ROOT

REPO = REPO_ROOT
ARTIFACTS = Path("artifacts/ci")
KSERVE_VENV = Path(".venv-kserve")
KSERVE_REQUIREMENTS = Path("tests/oip/requirements.txt")
GHERKIN_LINT = Path(".ci/gherkin-lint")
PY = sys.executable
UV = str(Path(PY).with_name("uv"))
# The test step's guards: a missing optional tool fails these tests here, where CI installs it, instead of
# skipping them.
REQUIRED = {"OCR_REQUIRE_KSERVE": "1", "OCR_REQUIRE_GRAFANA_SDK": "1"}

# tests/ spread over two processes, a test file to each at a time (a file's fixtures start services once);
# the features share one local platform, whose timing scenarios (rate limit, rollout) get the machine to
# themselves.
TEST_WORKERS = ("-n", "2", "--dist", "loadfile")

Command = tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One named CI step: what it proves, and the commands that prove it."""

    name: str
    proves: str
    commands: Callable[[], Sequence[Command]]
    env: Mapping[str, str] = field(default_factory=dict)


def _crd_commands() -> list[Command]:
    # A local copy of the pinned CRDs (../shared/crds, $OCR_CRD_DIR or the cache) is used as it is;
    # without one, the pinned releases' CRDs are downloaded into the cache first.
    fetch: list[Command] = []
    if crd_dir_problem(default_crd_dir()) is not None:
        fetch.append((PY, "-m", "harness", "manifests", "fetch-crds"))
    return [*fetch, (PY, "-m", "harness", "manifests", "validate")]


def _kserve_venv_commands() -> list[Command]:
    # KServe's client pins fastapi, pydantic and numpy its own way: it gets a venv of its own, from its own
    # hashed requirements, made with the same uv as the project's.
    return [
        (UV, "venv", "--quiet", "--allow-existing", "--python", PY, str(KSERVE_VENV)),
        (UV, "pip", "install", "--quiet", "--python", str(KSERVE_VENV / "bin" / "python"), "--require-hashes",
         "-r", str(KSERVE_REQUIREMENTS)),
    ]  # fmt: skip


def _static(*commands: Command) -> Callable[[], Sequence[Command]]:
    return lambda: commands


STEPS: tuple[Step, ...] = (
    Step("lock", "uv.lock matches pyproject.toml; each compiled requirements file matches its input",
         _static((PY, "-m", "harness", "lock", "check"))),
    Step("lint", "ruff's rules and format, mypy's types and the import contracts",
         _static((PY, "-m", "ruff", "check", "."), (PY, "-m", "ruff", "format", "--check", "."), (PY, "-m", "mypy"),
                 (str(Path(PY).with_name("lint-imports")), "--no-cache"))),
    Step("workflows", "the GitHub workflows and the update bot's configuration against their schemas",
         lambda: [(PY, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                   *sorted(str(p) for p in Path(".github/workflows").glob("*.yml"))),
                  (PY, "-m", "check_jsonschema", "--builtin-schema", "vendor.renovate", "renovate.json")]),
    Step("gherkin", "the features pass gherkin-lint (features/.gherkin-lintrc), installed from its npm lock",
         _static(("npm", "ci", "--prefix", str(GHERKIN_LINT), "--no-audit", "--no-fund", "--loglevel", "error"),
                 (str(GHERKIN_LINT / "node_modules" / ".bin" / "gherkin-lint"), "-c", "features/.gherkin-lintrc",
                  "features"))),
    Step("audit", "no unaccepted known vulnerability in the locked set", _static((PY, "-m", "harness", "audit"))),
    Step("manifests", "every overlay renders and validates strictly against Kubernetes and the pinned CRDs",
         _crd_commands),
    Step("monitoring", "the alert and recording rules pass promtool's checks and unit tests",
         _static((PY, "-m", "harness", "monitoring", "promtool"))),
    Step("kserve-client", "KServe's own client in a venv of its own, for the Open Inference Protocol tests",
         _kserve_venv_commands),
    Step("tests", "unit, HTTP, manifest, dashboard and KServe-client tests over both cores, then the local "
         "acceptance features in one process (the README's test command: make test)",
         _static((PY, "-m", "pytest", "tests", *TEST_WORKERS, "-p", "no:cacheprovider"),
                 (PY, "-m", "pytest", "features", "--target", "local", "-p", "no:cacheprovider")),
         env=REQUIRED),
    Step("fuzz", "Schemathesis finds no server error and no undocumented answer in the API",
         _static((PY, "-m", "pytest", "tests/fuzz/test_openapi_fuzz.py", "-q", "-p", "no:cacheprovider")),
         env={"OCR_FUZZ": "1"}),
    Step("mutate", "each fast mutation of the catalogue fails its catchers "
         "(python -m harness mutate run --fast)",
         _static((PY, "-m", "harness", "mutate", "run", "--fast", "--jobs", "2"))),
    Step("image", "the image builds offline from the lock and serves as production runs it",
         _static((PY, "-m", "harness", "image", "test", "--offline-base"))),
)  # fmt: skip


@dataclass
class Outcome:
    step: str
    seconds: float
    returncode: int
    command: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0


def select(names: Sequence[str], skip: Sequence[str] = ()) -> list[Step]:
    """The steps named (all when none), in the defined order, less those skipped; unknown names refused."""
    known = {s.name for s in STEPS}
    unknown = sorted((set(names) | set(skip)) - known)
    if unknown:
        raise SystemExit(f"ci: no step {', '.join(unknown)}; the steps are {', '.join(s.name for s in STEPS)}")
    return [s for s in STEPS if (not names or s.name in names) and s.name not in skip]


def run_step(step: Step, runner: Callable[..., int] | None = None) -> Outcome:
    """Run ``step``'s commands in order; the outcome of the first that fails, or of the whole step."""
    call = runner or (lambda argv, env: subprocess.call(list(argv), env=env))
    env = {**os.environ, **step.env}
    start = time.monotonic()
    for argv in step.commands():
        print(f"+ {' '.join(argv)}", flush=True)
        returncode = call(argv, env)
        if returncode != 0:
            return Outcome(step.name, time.monotonic() - start, returncode, " ".join(argv))
    return Outcome(step.name, time.monotonic() - start, 0)


def run(steps: Sequence[Step], *, keep_going: bool = False, runner: Callable[..., int] | None = None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for step in steps:
        print(f"\n== {step.name}: {step.proves} ({time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
        outcome = run_step(step, runner)
        outcomes.append(outcome)
        if not outcome.passed:
            print(f"ci: step {step.name} failed: exit {outcome.returncode} from {outcome.command}", flush=True)
            if not keep_going:
                break
    return outcomes


def summary(outcomes: Sequence[Outcome], planned: Sequence[Step]) -> str:
    done = {o.step: o for o in outcomes}
    lines = ["", "== summary"]
    for step in planned:
        outcome = done.get(step.name)
        if outcome is None:
            lines.append(f"  {step.name:<14} not run")
        else:
            verdict = "ok" if outcome.passed else f"FAILED (exit {outcome.returncode})"
            lines.append(f"  {step.name:<14} {outcome.seconds:7.1f} s  {verdict}")
    passed = sum(o.passed for o in outcomes)
    lines.append(f"ci: {passed} passed, {len(planned) - passed} failed")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        for step in STEPS:
            print(f"{step.name:<14} {step.proves}")
        return 0
    planned = select(args.steps, args.skip)
    start = time.monotonic()
    outcomes = run(planned, keep_going=args.keep_going)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    record = {"seconds": time.monotonic() - start, "steps": [o.__dict__ for o in outcomes]}
    (ARTIFACTS / "steps.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nci: {record['seconds']:.0f} s in all")
    print(summary(outcomes, planned))
    return 0 if len(outcomes) == len(planned) and all(o.passed for o in outcomes) else 1
