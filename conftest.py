"""Root pytest configuration: targets, .feature collection, capability skips, evidence.

Options: ``--target local|kind|cluster`` (default ``$HARNESS_TARGET`` or ``local``), ``--artifacts DIR``,
``--keep`` (leave the platform running), ``--kube-context NAME`` (for the cluster target).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from harness.bdd import (
    EVIDENCE_KEY,
    MARKERS,
    RUN_KEY,
    SUMMARY_KEY,
    TARGET_KEY,
    FeatureFile,
    apply_capability_skips,
    drop_duplicate_scenarios,
    key_figures,
    scenario_names,
)
from harness.evidence import RunEvidence, ScenarioOutcome, new_run_id
from harness.targets import TARGETS, target_class

pytest_plugins = [
    "steps.fixtures",
    "steps.common",
    "steps.service",
    "steps.prometheus",
    "steps.load",
    "steps.gateway",
    "steps.scaling",
    "steps.jobs",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("platform", "OCR platform acceptance")
    group.addoption(
        "--target",
        choices=sorted(TARGETS),
        default=os.environ.get("HARNESS_TARGET", "local"),
        help="where the platform runs (default: $HARNESS_TARGET or local)",
    )
    group.addoption("--artifacts", default="artifacts", help="evidence folder; each run gets <DIR>/<run-id>/")
    group.addoption("--keep", action="store_true", help="leave the platform running after the run")
    group.addoption("--kube-context", default=None, help="kubeconfig context for --target cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    run_id = os.environ.get("HARNESS_RUN_ID") or new_run_id()
    root = Path(config.getoption("artifacts")).resolve() / run_id
    root.mkdir(parents=True, exist_ok=True)
    config.stash[RUN_KEY] = RunEvidence(root=root, target=config.getoption("target"))
    # JUnit XML and cucumber JSON beside the summary, unless the user chose other paths.
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(root / "junit.xml")
    if getattr(config.option, "cucumber_json_path", None) is None:
        config.option.cucumber_json_path = str(root / "cucumber.json")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".feature":
        return FeatureFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = drop_duplicate_scenarios(items)
    apply_capability_skips(items, target_class(config.getoption("target")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not item.nodeid.split("::")[0].endswith(".feature"):
        return report
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None and run.outcomes:
        path = run.write_summary()
        session.config.stash[SUMMARY_KEY] = str(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    path = config.stash.get(SUMMARY_KEY, None)
    if path:
        terminalreporter.write_line(f"acceptance evidence: {Path(path).parent} (summary: {path})")
