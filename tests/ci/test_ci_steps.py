"""The CI steps, defined once in harness.checks.ci: what they cover, how they run, and who calls them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness.checks import ci

ROOT = Path(__file__).resolve().parents[2]


def test_the_steps_cover_every_check_ci_promises() -> None:
    names = [s.name for s in ci.STEPS]
    assert names == [
        "lock", "lint", "workflows", "gherkin", "audit", "manifests", "monitoring", "kserve-client", "tests", "fuzz",
        "mutate", "image",
    ]  # fmt: skip
    flat = {name: [" ".join(argv) for argv in step.commands()] for name, step in ((s.name, s) for s in ci.STEPS)}
    assert any("ruff check" in c for c in flat["lint"])
    assert any("ruff format --check" in c for c in flat["lint"])
    assert any(c.endswith("-m mypy") for c in flat["lint"])
    assert any("vendor.github-workflows" in c for c in flat["workflows"])
    assert any("pytest tests -n 2 --dist loadfile" in c for c in flat["tests"])
    assert any("pytest features --target local" in c for c in flat["tests"])
    assert any("harness image test --offline-base" in c for c in flat["image"])
    assert any("manifests validate" in c for c in flat["manifests"])
    # The tests step requires the optional tools CI installs, instead of skipping their tests.
    tests_step = next(s for s in ci.STEPS if s.name == "tests")
    assert tests_step.env == {"OCR_REQUIRE_KSERVE": "1", "OCR_REQUIRE_GRAFANA_SDK": "1"}


def test_the_fuzz_step_runs_schemathesis_with_one_worker() -> None:
    text = (ROOT / "tests" / "fuzz" / "test_openapi_fuzz.py").read_text()
    assert '"--workers", "1"' in text


def test_a_run_stops_at_the_first_failed_command_and_says_which() -> None:
    calls: list[tuple[str, ...]] = []

    def runner(argv: tuple[str, ...], env: dict[str, str]) -> int:
        calls.append(tuple(argv))
        return 3 if argv == ("b", "2") else 0

    steps = [
        ci.Step("one", "first", lambda: [("a", "1")]),
        ci.Step("two", "second", lambda: [("b", "1"), ("b", "2"), ("b", "3")], env={"X": "1"}),
        ci.Step("three", "third", lambda: [("c", "1")]),
    ]
    outcomes = ci.run(steps, runner=runner)
    assert calls == [("a", "1"), ("b", "1"), ("b", "2")]
    assert [(o.step, o.returncode, o.command) for o in outcomes] == [("one", 0, ""), ("two", 3, "b 2")]
    text = ci.summary(outcomes, steps)
    assert text.splitlines()[-1] == "ci: 1 passed, 2 failed"
    assert re.search(r"two\s+[\d.]+ s  FAILED \(exit 3\)", text)
    assert re.search(r"three\s+not run", text)

    calls.clear()
    outcomes = ci.run(steps, runner=runner, keep_going=True)
    assert [o.step for o in outcomes] == ["one", "two", "three"]


def test_select_keeps_the_order_and_refuses_unknown_names() -> None:
    assert [s.name for s in ci.select(["tests", "lint"])] == ["lint", "tests"]
    assert "image" not in [s.name for s in ci.select([], skip=["image"])]
    with pytest.raises(SystemExit, match="no step nope"):
        ci.select(["nope"])


def test_the_step_env_reaches_the_commands(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    script = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    step = ci.Step("env", "env", lambda: [(ci.PY, "-c", script)], env={"OCR_FUZZ": "1"})
    assert ci.run_step(step).passed
    assert json.loads(out.read_text())["OCR_FUZZ"] == "1"


def test_ci_run_and_the_github_workflow_run_the_same_steps() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m harness ci run\n" in run
    assert "bash .ci/setup" in run
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    commands = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert "bash .ci/setup" in commands
    assert ".venv/bin/python -m harness ci run" in commands
    # No other check is listed in either place: the list lives in harness.checks.ci.
    assert not [c for c in commands if c and c not in ("bash .ci/setup", ".venv/bin/python -m harness ci run")]
    assert "pytest" not in run and "tox" not in run


def test_setup_installs_from_the_lock_with_the_pinned_uv() -> None:
    setup = (ROOT / ".ci" / "setup").read_text()
    assert "uv sync --locked --extra dev" in setup
    pyproject = (ROOT / "pyproject.toml").read_text()
    pinned = re.search(r'^required-version = "==([\d.]+)"$', pyproject, re.MULTILINE)
    assert pinned is not None
    assert f'"uv=={pinned.group(1)}"' in pyproject  # the dev extra's uv is the same


GHERKIN_LINT = ROOT / ".ci" / "gherkin-lint" / "node_modules" / ".bin" / "gherkin-lint"


@pytest.mark.skipif(not GHERKIN_LINT.exists(), reason="gherkin-lint is not installed (CI's gherkin step installs it)")
def test_gherkin_lint_refuses_the_shapes_the_features_must_not_have(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "bad.feature"
    bad.write_text(
        "@milestone1\nFeature: A promise\n\n  Scenario: An action written after its outcome\n"
        "    When a client sends an image\n    Then the response is 200\n    When a client sends another\n"
    )
    config = str(ROOT / "features" / ".gherkin-lintrc")
    done = subprocess.run([str(GHERKIN_LINT), "-c", config, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "keywords-in-logical-order" in said and "only-one-when" in said
    good = subprocess.run(
        [str(GHERKIN_LINT), "-c", config, str(ROOT / "features")], capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0, good.stdout
