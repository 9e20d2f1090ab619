"""The Makefile: every target is listed by ``make help`` and declared phony; the cluster shortcuts call
the harness commands they name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
CLUSTER_TARGETS = {
    "cluster-up",
    "cluster-down",
    "kserve-install",
    "deploy-ocr",
    "load-test",
    "status",
    "plan",
    "milestone1",
    "milestone2",
    "milestone3",
}
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
# The Makefile's knobs, kept out of the environment so that the defaults are what is tested.
KNOBS = {"PY", "PROFILE", "KUBE_CONTEXT", "USERS", "SECONDS", "RECORD", "FAST", "MAKEFLAGS"}


def targets(text: str) -> list[str]:
    return re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, flags=re.MULTILINE)


def help_problems(text: str) -> list[str]:
    """Targets that ``make help`` would not list (no ``## `` text, or a name its grep pattern misses) or
    that .PHONY does not declare."""
    found = re.search(r"grep -E '([^']+)' \$\(MAKEFILE_LIST\)", text)
    if not found:
        return ["the help target does not grep the Makefile"]
    listed = re.compile(found.group(1))  # the ERE of the help target reads the same in Python
    phony_text = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", text, flags=re.MULTILINE)
    phony = set((phony_text.group(1) if phony_text else "").replace("\\\n", " ").split())
    problems = []
    for line in text.splitlines():
        name = targets(line + "\n")
        if not name or name[0] == ".PHONY":
            continue
        if not listed.search(line):
            problems.append(f"{name[0]}: not listed by `make help`")
        if name[0] not in phony:
            problems.append(f"{name[0]}: not in .PHONY")
    return problems


def dry_run(*args: str) -> list[str]:
    env = {name: value for name, value in os.environ.items() if name not in KNOBS}
    completed = subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return completed.stdout.split()


def test_every_target_is_listed_and_phony() -> None:
    text = MAKEFILE.read_text()
    assert set(targets(text)) >= CLUSTER_TARGETS
    assert help_problems(text) == []


def test_help_check_reports_a_target_without_help_or_phony() -> None:
    text = MAKEFILE.read_text() + "\nsmoke1:\n\techo hi\n"
    assert help_problems(text) == ["smoke1: not listed by `make help`", "smoke1: not in .PHONY"]


def test_help_check_reports_a_pattern_that_misses_digits() -> None:
    text = MAKEFILE.read_text().replace("^[a-z0-9-]+:", "^[a-z-]+:")
    assert help_problems(text) == [f"milestone{m}: not listed by `make help`" for m in (1, 2, 3)]


@needs_make
def test_help_prints_the_cluster_targets() -> None:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert {line.split()[0] for line in out.stdout.splitlines() if line.strip()} >= CLUSTER_TARGETS


@needs_make
@pytest.mark.parametrize(
    ("args", "argv"),
    [
        (("cluster-up", "PROFILE=milestone1"), ["-m", "harness", "up", "--profile", "milestone1"]),
        (("cluster-up",), ["-m", "harness", "up", "--profile", "full"]),
        (
            ("kserve-install", "KUBE_CONTEXT=kind-ocr"),
            ["-m", "harness", "up", "--profile", "full", "--only", "platform", "--kube-context", "kind-ocr"],
        ),
        (("deploy-ocr",), ["-m", "harness", "up", "--profile", "full", "--only", "app"]),
        (("load-test",), ["-m", "harness", "load", "--users", "8", "--seconds", "60"]),
        (("load-test", "USERS=2", "SECONDS=5"), ["-m", "harness", "load", "--users", "2", "--seconds", "5"]),
        (("cluster-down",), ["-m", "harness", "down"]),
        (("status",), ["-m", "harness", "status"]),
        (("plan", "PROFILE=milestone2"), ["-m", "harness", "plan", "--profile", "milestone2"]),
        (("milestone3",), ["-m", "tox", "-e", "milestone3"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_cluster_target_runs(args: tuple[str, ...], argv: list[str]) -> None:
    assert dry_run("PY=python", *args) == ["python", *argv]
