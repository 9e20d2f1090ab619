"""Feature collection uses pytest-bdd's public API only, and fails loudly if a pytest-bdd release breaks it."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest_bdd
from gherkin.parser import Parser

from harness.provisioning.paths import REPO_ROOT

PUBLIC = set(pytest_bdd.__all__) | {"parsers"}  # ``parsers`` is the documented module of step parsers


def _expected_tests() -> int:
    count = 0
    for path in sorted((REPO_ROOT / "features").glob("*.feature")):
        feature = Parser().parse(path.read_text())["feature"]
        children = list(feature["children"])
        while children:
            child = children.pop(0)
            children.extend((child.get("rule") or {}).get("children") or [])
            if scenario := child.get("scenario"):
                rows = sum(len(examples.get("tableBody") or []) for examples in scenario.get("examples") or [])
                count += max(1, rows)
    return count


def test_every_scenario_of_every_feature_is_collected_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "features"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    tests = [line for line in done.stdout.splitlines() if ".feature::" in line]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = _expected_tests()
    assert expected > 40  # the features as they are: a parse that found nothing would prove nothing
    assert len(tests) == expected == len(set(tests)), tests


def test_the_project_imports_only_pytest_bdds_public_names() -> None:
    offenders = []
    for path in [*REPO_ROOT.glob("harness/**/*.py"), *REPO_ROOT.glob("steps/*.py"), REPO_ROOT / "conftest.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            private = (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("pytest_bdd")
                and (node.module != "pytest_bdd" or {alias.name for alias in node.names} - PUBLIC)
            )
            if private:
                offenders.append(f"{path.relative_to(REPO_ROOT)}: from {node.module} import ...")
            if isinstance(node, ast.Import):
                offenders += [f"{path}: import {a.name}" for a in node.names if a.name.startswith("pytest_bdd.")]
    assert not offenders, offenders
