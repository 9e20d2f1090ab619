"""The acceptance wiring, in one pytest plugin: options, ``.feature`` collection, the platform profile a
run needs, skips, the target, evidence, and the fixtures every step can ask for.

* ``.feature`` files are collected as test modules (:class:`FeatureFile`, built in memory): each scenario
  the Gherkin parser finds is bound with pytest-bdd's public ``scenario`` decorator, and carries its own
  :class:`ScenarioRef` (file, feature, name, line), so nothing reads pytest-bdd's private registry.
* After ``-m``/``-k`` have deselected (``trylast``), the selected scenarios' milestone and capability tags
  choose the profile a Kubernetes target deploys, and each scenario the target cannot serve is skipped
  there, at collection, with a reason that names the scenario.
* The target starts once per run; if it cannot start (no Docker, a failed provisioning), the run stops
  once with one line saying why, not once per scenario.
* pytest-bdd's public hooks record the failing step and let the target undo what a scenario changed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import time
import types
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from gherkin.parser import Parser as GherkinParser
from pytest_bdd import scenario

from harness.acceptance import report
from harness.acceptance.evidence import RunEvidence, ScenarioEvidence, ScenarioOutcome, new_run_id, slug
from harness.acceptance.load import LocustRun
from harness.acceptance.targets import TAGS, TARGETS, Gateway, Target, TargetOptions, skip_reason, target_class
from harness.errors import HarnessError
from harness.provisioning import profiles

RUN_KEY = pytest.StashKey[RunEvidence]()
EVIDENCE_KEY = pytest.StashKey[ScenarioEvidence]()
TARGET_KEY = pytest.StashKey[Target]()
OPTIONS_KEY = pytest.StashKey[TargetOptions]()
SUMMARY_KEY = pytest.StashKey[str]()
STARTED_KEY = pytest.StashKey[float]()
REPORT_KEY = pytest.StashKey[str]()
START_FAILED_KEY = pytest.StashKey[str]()
SCENARIO_ATTRIBUTE = (
    "__ocr_scenario__"  # a bound scenario's ScenarioRef  # why the platform could not start: the run did not happen
)
# Observations that every scenario makes; the summary shows what the scenario itself checked.
_BACKGROUND_KEYS = frozenset({"readyz", "profile", "scrape_targets", "api_key_clients"})

MILESTONES = ("milestone1", "milestone2", "milestone3", "optional")
MARKERS = {
    **{m: f"scenario belongs to {m}" for m in MILESTONES},
    **{c: f"scenario needs the {c} capability of its target" for c in sorted(TAGS)},
}


# -- options and configuration ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("platform", "OCR platform acceptance")
    group.addoption(
        "--target",
        choices=sorted(TARGETS),
        default=os.environ.get("HARNESS_TARGET", "local"),
        help="where the platform runs (default: $HARNESS_TARGET or local)",
    )
    group.addoption("--artifacts", default="artifacts", help="evidence folder; each run gets <DIR>/<run-id>/")
    group.addoption("--keep", action="store_true", help="leave the platform (processes, kind cluster) running")
    group.addoption("--kube-context", default=None, help="kubeconfig context for --target cluster")
    group.addoption(
        "--profile",
        choices=sorted(profiles.PROFILES),
        default=None,
        help="platform profile for kind/cluster (default: the smallest that serves the selected scenarios)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    run_id = os.environ.get("HARNESS_RUN_ID") or new_run_id()
    root = Path(config.getoption("artifacts")).resolve() / run_id
    run = RunEvidence(root=root, target=config.getoption("target"))
    run.facts["started_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    config.stash[RUN_KEY] = run
    config.stash[STARTED_KEY] = time.time()
    # JUnit XML and cucumber JSON beside the summary, unless the user chose other paths; a run of unit
    # tests alone (no features/ or .feature argument) leaves no run folder behind.
    if getattr(config.option, "generate_missing", False) or not any(_names_features(a) for a in config.args):
        return
    root.mkdir(parents=True, exist_ok=True)
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(root / "junit.xml")
    if getattr(config.option, "cucumber_json_path", None) is None:
        config.option.cucumber_json_path = str(root / "cucumber.json")


def _names_features(arg: str) -> bool:
    """Whether a command-line path is, or directly holds, feature files (never a deep search)."""
    path = Path(arg.split("::")[0])
    if path.suffix == ".feature" or "features" in path.parts:
        return True
    return path.is_dir() and any(next(p.glob("*.feature"), None) for p in (path, path / "features"))


# -- collection -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioRef:
    """A scenario as its ``.feature`` file says it: the file, the feature's name, its own name and line."""

    path: str
    feature: str
    name: str
    line: int


@functools.cache
def read_feature(path: str) -> dict[str, ScenarioRef]:
    """Every scenario of a ``.feature`` file by name, parsed with the Gherkin parser pytest-bdd itself uses
    (``gherkin-official``), rules' scenarios included."""
    document = GherkinParser().parse(Path(path).read_text(encoding="utf-8"))
    feature = document.get("feature") or {}
    found: dict[str, ScenarioRef] = {}
    children = list(feature.get("children") or [])
    while children:
        child = children.pop(0)
        children.extend((child.get("rule") or {}).get("children") or [])
        if scenario := child.get("scenario"):
            found[scenario["name"]] = ScenarioRef(path, feature["name"], scenario["name"], scenario["location"]["line"])
    return found


class FeatureFile(pytest.Module):
    """A ``.feature`` file as a test module whose tests are its scenarios, each bound with pytest-bdd's public
    ``scenario`` decorator and marked with its :class:`ScenarioRef`."""

    def _getobj(self) -> types.ModuleType:
        module = types.ModuleType(f"feature_{self.path.stem}")
        module.__file__ = str(self.path)
        for index, ref in enumerate(read_feature(str(self.path)).values()):
            bound = scenario(str(self.path), ref.name, features_base_dir=str(self.path.parent))(_no_more_steps)
            setattr(bound, SCENARIO_ATTRIBUTE, ref)
            setattr(module, f"test_{index:03d}_{slug(ref.name, 60).replace('-', '_')}", bound)
        return module


def _no_more_steps() -> None:
    """The body of a bound scenario: its steps are all it does."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".feature":
        return FeatureFile.from_parent(parent, path=file_path)
    return None


def scenario_ref(item: pytest.Item) -> ScenarioRef | None:
    """The scenario a test runs, None for any other test. A ``.feature`` file's tests carry it; a test module
    that binds scenarios itself (``scenarios("x.feature")``) is known by the docstring pytest-bdd gives each
    bound test, ``"<feature file>: <scenario name>"``."""
    function = getattr(item, "function", None)
    ref = getattr(function, SCENARIO_ATTRIBUTE, None)
    if isinstance(ref, ScenarioRef):
        return ref
    path, _, name = str(getattr(function, "__doc__", None) or "").partition(": ")
    if not path.endswith(".feature") or not Path(path).is_file():
        return None
    return read_feature(path).get(name)


def scenario_key(item: pytest.Item) -> tuple[str, str] | None:
    """(feature file, scenario name) for a pytest-bdd test, None for any other test."""
    ref = scenario_ref(item)
    return None if ref is None else (ref.path, ref.name)


def scenario_names(item: pytest.Item) -> tuple[str, str] | None:
    """(feature name, scenario name) as the feature file says them; an outline's example adds its values."""
    ref = scenario_ref(item)
    if ref is None:
        return None
    param = getattr(getattr(item, "callspec", None), "id", None)
    return (ref.feature, f"{ref.name} [{param}]" if param else ref.name)


def scenario_location(item: pytest.Item) -> tuple[str, int] | None:
    """(feature file, line) of a scenario: where a person looks when it is skipped or fails."""
    ref = scenario_ref(item)
    if ref is None:
        return None
    path = Path(ref.path)
    with contextlib.suppress(ValueError):
        path = path.relative_to(item.config.rootpath)
    return (str(path), ref.line)


def drop_duplicate_scenarios(items: list[pytest.Item]) -> list[pytest.Item]:
    """Run each scenario once. A test module that binds a scenario itself wins over the ``.feature`` file's
    binding (its module-local steps apply); otherwise the first binding is kept.
    """

    def full_key(item: pytest.Item) -> tuple[str, ...] | None:
        key = scenario_key(item)
        if key is None:
            return None
        return (*key, getattr(getattr(item, "callspec", None), "id", ""))

    bound_by_modules = {k for item in items if not isinstance(item.parent, FeatureFile) and (k := full_key(item))}
    seen: set[tuple[str, ...]] = set()
    kept = []
    for item in items:
        key = full_key(item)
        if key is not None:
            if key in seen or (isinstance(item.parent, FeatureFile) and key in bound_by_modules):
                continue
            seen.add(key)
        kept.append(item)
    return kept


def tags(item: pytest.Item) -> tuple[set[str], set[str]]:
    """(milestones, capabilities) a scenario is tagged with."""
    names = {m.name for m in item.iter_markers()}
    return names & set(MILESTONES), names & TAGS


def target_options(config: pytest.Config, items: Iterable[pytest.Item]) -> TargetOptions:
    """The target's options; for a Kubernetes target the profile is the one the selected scenarios need."""
    name = config.getoption("target")
    profile = config.getoption("profile")
    if profile is None and name != "local":
        milestones: set[str] = set()
        capabilities: set[str] = set()
        for item in items:
            if scenario_key(item) is not None:
                m, c = tags(item)
                milestones |= m
                capabilities |= c
        profile = profiles.profile_for(milestones, capabilities).name
    return TargetOptions(
        artifacts=config.stash[RUN_KEY].root,
        keep=bool(config.getoption("keep")),
        kube_context=config.getoption("kube_context"),
        profile=profile,
    )


def apply_skips(items: Iterable[pytest.Item], target: type[Target], options: TargetOptions) -> None:
    for item in items:
        milestones, capabilities = tags(item)
        reason = skip_reason(target, options, capabilities, milestones)
        if reason is not None:
            names = scenario_names(item)
            label = f"{Path(str(item.path)).name}: {names[1]}" if names else item.name
            item.add_marker(pytest.mark.skip(reason=f"{label}: {reason}"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = drop_duplicate_scenarios(items)
    options = target_options(config, items)
    config.stash[OPTIONS_KEY] = options
    apply_skips(items, target_class(config.getoption("target")), options)


# -- reports and evidence ---------------------------------------------------------------------------------


def key_figures(evidence: ScenarioEvidence | None) -> dict[str, Any]:
    if evidence is None:
        return {}
    return {k: v for k, v in evidence.observations.items() if k not in _BACKGROUND_KEYS}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if scenario_key(item) is None:
        return report
    location = scenario_location(item)
    if report.skipped and isinstance(report.longrepr, tuple) and location is not None:
        # Point the skip at the scenario in its .feature file, not at pytest-bdd's wrapper.
        report.longrepr = (location[0], location[1], report.longrepr[2])
    run = item.config.stash[RUN_KEY]
    names = scenario_names(item) or (Path(item.nodeid.split("::")[0]).stem, item.name)
    evidence = item.stash.get(EVIDENCE_KEY, None)
    if report.failed and call.when in ("setup", "call"):
        target = item.config.stash.get(TARGET_KEY, None)
        if target is not None and evidence is not None:
            try:
                target.collect_evidence(evidence.path / "logs")
            except Exception as exc:  # noqa: BLE001 - evidence must not hide the real failure
                evidence.record("evidence_error", str(exc))
        if evidence is not None:
            evidence.write_text("failure.txt", str(report.longrepr))
    if (call.when == "call") or (call.when == "setup" and (report.skipped or report.failed)):
        reason = None
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            reason = (report.longreprtext.strip().splitlines() or ["failed"])[-1][:300]
        run.add(
            ScenarioOutcome(
                feature=names[0],
                scenario=names[1],
                nodeid=item.nodeid,
                outcome=report.outcome,
                duration_s=round(report.duration, 2),
                reason=reason,
                figures=key_figures(evidence),
            )
        )
    return report


def pytest_bdd_step_error(
    request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any, step_func: Any, step_func_args: Any,
    exception: Exception,
) -> None:  # fmt: skip
    evidence = request.node.stash.get(EVIDENCE_KEY, None)
    if evidence is not None:
        evidence.record("failed_step", {"step": f"{step.keyword} {step.name}", "line": step.line_number,
                                        "error": f"{type(exception).__name__}: {exception}"[:500]})  # fmt: skip


def pytest_bdd_after_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    target = request.config.stash.get(TARGET_KEY, None)
    if target is not None:
        target.scenario_finished()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None and run.outcomes:
        run.facts["duration_s"] = round(time.time() - session.config.stash[STARTED_KEY], 1)
        path = run.write_summary()
        session.config.stash[SUMMARY_KEY] = str(path)
        try:
            session.config.stash[REPORT_KEY] = str(report.build(run.root))
            report.point_latest(run.root)
        except Exception as exc:  # noqa: BLE001 - any failure to build it fails the run, said in one line
            # The evidence is part of what a run delivers: a run whose report could not be built did not
            # finish, whatever its scenarios said.
            session.config.stash[REPORT_KEY] = f"not written: {type(exc).__name__}: {exc}"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run that never started its platform leaves no run folder behind (only pytest's empty XML and JSON
    would be in it, and the empty log folders a target made before it gave up)."""
    run = config.stash.get(RUN_KEY, None)
    if run is None or START_FAILED_KEY not in config.stash or run.outcomes or not run.root.is_dir():
        return
    left = [p for p in run.root.rglob("*") if p.is_file() and p.name not in ("junit.xml", "cucumber.json")]
    if not left:
        shutil.rmtree(run.root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    path = config.stash.get(SUMMARY_KEY, None)
    if path:
        terminalreporter.write_line(f"acceptance evidence: {Path(path).parent} (summary: {path})")
        terminalreporter.write_line(f"report: {config.stash.get(REPORT_KEY, 'not written')}")
    if kept := getattr(config.stash.get(TARGET_KEY, None), "kept_message", ""):
        terminalreporter.write_line(kept)  # --keep: what is left running and how to stop it


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The platform, started once per run and stopped (unless --keep) after the last scenario. A platform
    that cannot start ends the run at once with one line that says why."""
    config = request.config
    options = config.stash.get(OPTIONS_KEY, None) or target_options(config, [])
    platform = target_class(config.getoption("target"))(options)
    config.stash[TARGET_KEY] = platform
    run = config.stash[RUN_KEY]
    run.facts["profile"] = options.profile
    try:
        platform.start()
        run.facts["gateway"] = platform.describe_gateway() if isinstance(platform, Gateway) else None
    except HarnessError as exc:
        why = f"harness: target {platform.name}: {exc}"
        config.stash[START_FAILED_KEY] = why
        try:
            platform.stop()
        finally:
            capture = config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                print(f"\n{why}", file=sys.stderr, flush=True)
            pytest.exit("the run did not happen: the platform could not start (the line above says why)", returncode=3)
    yield platform
    platform.stop()


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> ScenarioEvidence:
    feature, scenario = scenario_names(request.node) or (Path(str(request.node.path)).stem, request.node.name)
    evidence = request.config.stash[RUN_KEY].scenario(feature, scenario)
    request.node.stash[EVIDENCE_KEY] = evidence
    return evidence


@pytest.fixture
def client(target: Target) -> Iterator[httpx.Client]:
    """An HTTP client that never retries and never follows redirects: a 429 or 503 is seen as it is. It
    carries the headers the target's routing needs (a Host header for a Knative predictor)."""
    # Connections enough for paced gateway traffic (20 requests a second per client, answers that queue).
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    transport = httpx.HTTPTransport(retries=0, limits=limits)
    with httpx.Client(
        transport=transport, timeout=httpx.Timeout(60.0), follow_redirects=False, headers=target.service_headers()
    ) as c:
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
