"""The acceptance wiring, exercised through real pytest runs in child processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_pytest(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """An inner pytest run; its evidence goes to a temporary folder, never the repository's artifacts/."""
    if "--artifacts" not in args and "--generate-missing" not in args:
        args = (*args, "--artifacts", tempfile.mkdtemp(prefix="inner-run-"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


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
        line.startswith(("features/security.feature", "features/ratelimit.feature", "features/rollout.feature"))
        for line in collected
    ), collected


def test_istio_scenario_on_local_target_is_skipped_with_reason() -> None:
    result = run_pytest("features/security.feature", "-k", "pod", "--target", "local", "-rs", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout
    # The skip line points at the scenario in its feature file and names it, not pytest-bdd's wrapper.
    assert re.search(
        r"SKIPPED \[1\] features/security.feature:\d+: security.feature: A pod outside the mesh cannot reach the "
        r"predictor: needs istio, k8s; target local does not provide them",
        result.stdout,
    ), result.stdout
    assert "scenario.py" not in result.stdout


def test_a_platform_that_cannot_start_fails_the_run_once_with_one_line(tmp_path: Path) -> None:
    """No Docker, no kind, no helm: one line naming each, within seconds, no traceback, not per scenario."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(Path(sys.executable).parent / "kubectl")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "HARNESS_TOOLS_DIR": str(tmp_path / "tools")}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "features", "--target", "kind", "-m",
         "milestone1", "--artifacts", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert time.monotonic() - start < 30
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    lines = output.splitlines()
    heads = [i for i, line in enumerate(lines) if "cannot provision the platform here" in line]
    assert len(heads) == 1, output
    listed = "\n".join(line for line in lines[heads[0] + 1 :] if line.startswith("  - "))
    for missing in ("docker", "kind", "helm"):
        assert missing in listed, listed
    assert "skew" in listed  # the virtualenv's kubectl 1.37 is outside the 1.35 server's skew
    assert "Traceback" not in output and " passed" not in output


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
    assert "Needs a mesh: needs istio; target local does not provide it" in result.stdout


def test_each_example_of_an_outline_has_its_own_steps_and_evidence(project: Path) -> None:
    # A long name, so that a folder cut to length would be the same for every example.
    long_name = "Doubling a number gives twice the number, whatever number it is, written out at length here"
    (project / "outline.feature").write_text(
        textwrap.dedent(
            f"""
            Feature: Outlines
              Scenario Outline: {long_name}
                Given the number <n>
                Then doubled it is <m>

                Examples:
                  | n | m |
                  | 2 | 4 |
                  | 3 | 6 |
            """
        )
    )
    (project / "test_outline.py").write_text(
        textwrap.dedent(
            """
            from pytest_bdd import given, parsers, scenarios, then

            scenarios("outline.feature")

            @given(parsers.parse("the number {n:d}"), target_fixture="n")
            def number(n, evidence):
                evidence.record("n", n)
                return n

            @then(parsers.parse("doubled it is {m:d}"))
            def doubled(n, m):
                assert n * 2 == m
            """
        )
    )
    out = project / "out"
    result = run_pytest(".", "-q", "-k", "doubling", "--target", "local", "--artifacts", str(out), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = [p for p in out.iterdir() if p.name != "latest"]
    folders = sorted((run / "outlines").iterdir())
    assert len(folders) == 2, folders
    assert sorted(json.loads((f / "observations.json").read_text())["n"] for f in folders) == [2, 3]
    html = (run / "report.html").read_text()
    # Each example shows its own steps: the values it ran with, not the last example's.
    sections = html.split('<h2 id="s1">')[1].split('<h2 id="s2">')
    assert "the number 2" in sections[0] and "doubled it is 4" in sections[0], sections[0][:2000]
    assert "the number 3" in sections[1] and "doubled it is 6" in sections[1]


def test_failing_scenario_is_reported_with_evidence(project: Path) -> None:
    feature = project / "arith.feature"
    feature.write_text(feature.read_text().replace("doubled it is 4", "doubled it is 5"))
    result = run_pytest(".", "-q", "--target", "local", "--artifacts", str(project / "out"), cwd=project)
    assert result.returncode == 1
    runs = [p for p in (project / "out").iterdir() if p.name != "latest"]
    assert len(runs) == 1
    assert (runs[0] / "junit.xml").exists() and (runs[0] / "cucumber.json").exists()
    # A failed run still gets its report, and `latest` points at it.
    assert (runs[0] / "report.html").is_file()
    assert (project / "out" / "latest").resolve() == runs[0].resolve()


def test_a_run_whose_report_cannot_be_built_fails(project: Path) -> None:
    """The report is part of what a run delivers: passing scenarios without it are not a passing run."""
    (project / "breakreport.py").write_text(
        "import harness.acceptance.report\n\n\ndef _broken(root):\n    raise RuntimeError('template broken')\n\n\n"
        "harness.acceptance.report.build = _broken\n"
    )
    result = run_pytest(".", "-q", "--target", "local", "--artifacts", str(project / "out"), "-p", "breakreport",
                        cwd=project)  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "report: not written: RuntimeError: template broken" in result.stdout
    assert "1 passed" in result.stdout


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


def test_a_missing_system_binary_is_said_in_one_plain_line_and_leaves_no_run_folder(tmp_path: Path) -> None:
    """redis-server missing: the harness' own line (not pytest's `Exit:` text), exit 3, and no run folder
    holding only pytest's empty XML and JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("haproxy", "prometheus"):  # everything the local target needs but Redis
        if found := shutil.which(name):
            (bin_dir / name).symlink_to(found)
    env = {"PATH": f"{bin_dir}:{Path(sys.executable).parent}", "HOME": str(tmp_path)}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "features/service.feature", "--artifacts", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "harness: target local: redis-server is not installed: apt-get install redis-server" in result.stderr
    assert "Exit: harness:" not in output and "the run did not happen" in output
    assert not out.exists() or not any(out.iterdir()), sorted(str(p) for p in out.rglob("*"))


def test_a_cluster_run_on_a_machine_without_docker_leaves_no_run_folder(tmp_path: Path) -> None:
    """The kind target refused by its preflight (no Docker, no kind, no helm here: an empty PATH but Python's)
    says why once, exits 3, and leaves no run folder, not even the empty log folder it had made."""
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock"}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "features/ratelimit.feature", "--target", "kind",
         "--artifacts", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "harness: target kind: cannot provision the platform here" in result.stderr, output
    assert "the run did not happen" in output
    assert not out.exists() or not any(out.iterdir()), sorted(str(p) for p in out.rglob("*"))
