"""The acceptance wiring, exercised through real pytest runs in child processes."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.targets import KindTarget, LocalTarget

REPO = Path(__file__).resolve().parents[2]


def run_pytest(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_skip_reason_names_capability_and_target() -> None:
    assert LocalTarget.skip_reason({"istio"}) == "needs istio; target local does not provide it"
    assert LocalTarget.skip_reason({"jobs", "prometheus"}) is None
    assert LocalTarget.skip_reason({"keda", "k8s", "jobs"}) == "needs k8s, keda; target local does not provide them"
    assert KindTarget.skip_reason({"istio", "keda", "hpa"}) is None


def test_feature_file_is_collected_by_path() -> None:
    result = run_pytest("features/service.feature", "--collect-only", "-q", "--target", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if line.startswith("features/service.feature::")]
    # 4 scenarios and a 7-row outline
    assert len(collected) == 11, result.stdout


def test_milestone_tags_select_scenarios() -> None:
    result = run_pytest("features", "--collect-only", "-q", "-m", "milestone2", "--target", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert collected and all(
        line.startswith(("features/security.feature", "features/ratelimit.feature")) for line in collected
    ), collected


def test_istio_scenario_on_local_target_is_skipped_with_reason() -> None:
    result = run_pytest("features/security.feature", "--target", "local", "-rs", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout
    assert "needs istio, k8s; target local does not provide them" in result.stdout


def test_unprovisioned_target_is_an_error_not_a_pass() -> None:
    result = run_pytest("features/service.feature", "--target", "kind", "-q", "-x")
    assert result.returncode == 1, result.stdout
    assert "target kind" in result.stdout and "error" in result.stdout.lower()
    assert " passed" not in result.stdout


def test_unknown_marker_is_refused() -> None:
    result = run_pytest("features/service.feature", "--collect-only", "-q", "-m", "milestone9", "--strict-markers")
    assert result.returncode == 4, result.stdout
    assert "milestone9" in result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project using the root conftest's hooks, with a feature also bound by a test module."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.util
            import sys

            sys.path.insert(0, {str(REPO)!r})
            spec = importlib.util.spec_from_file_location("platform_conftest", {str(REPO / "conftest.py")!r})
            root = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(root)
            pytest_plugins = root.pytest_plugins
            pytest_addoption = root.pytest_addoption
            pytest_configure = root.pytest_configure
            pytest_collect_file = root.pytest_collect_file
            pytest_collection_modifyitems = root.pytest_collection_modifyitems
            """
        )
    )
    (tmp_path / "arith.feature").write_text(
        textwrap.dedent(
            """
            Feature: Arithmetic
              Scenario: Adding
                Given the number 2
                Then doubled it is 4

              @istio
              Scenario: Needs a mesh
                Given the number 1
                Then doubled it is 2
            """
        )
    )
    (tmp_path / "test_arith.py").write_text(
        textwrap.dedent(
            """
            from pytest_bdd import given, parsers, scenarios, then

            scenarios("arith.feature")

            @given(parsers.parse("the number {n:d}"), target_fixture="n")
            def number(n):
                return n

            @then(parsers.parse("doubled it is {m:d}"))
            def doubled(n, m):
                assert n * 2 == m
            """
        )
    )
    return tmp_path


def test_scenarios_bound_twice_run_once(project: Path) -> None:
    result = run_pytest(".", "-q", "-rs", "--target", "local", "--artifacts", str(project / "out"), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout, result.stdout
    assert "needs istio; target local does not provide it" in result.stdout


def test_failing_scenario_is_reported_with_evidence(project: Path) -> None:
    feature = project / "arith.feature"
    feature.write_text(feature.read_text().replace("doubled it is 4", "doubled it is 5"))
    result = run_pytest(".", "-q", "--target", "local", "--artifacts", str(project / "out"), cwd=project)
    assert result.returncode == 1
    runs = list((project / "out").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "junit.xml").exists() and (runs[0] / "cucumber.json").exists()


def test_every_step_of_every_feature_has_a_definition() -> None:
    """Scenarios skipped on this target still must not hide a step nobody wrote."""
    result = run_pytest("--generate-missing", "--feature", "features", "-q")
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: it runs no test, by design
    scanned = result.stdout.splitlines()
    # The generator did scan the features: the service outline's placeholder step is always reported.
    assert any("<status>" in line and "service.feature" in line for line in scanned), result.stdout
    missing = [
        line
        for line in result.stdout.splitlines()
        # Outline steps are reported with their <placeholders> unsubstituted; their rows are run for real.
        if line.startswith("Step ") and "is not defined" in line and not re.search(r"<\w+>", line.split(" is not")[0])
    ]
    assert not missing, "\n".join(missing)
