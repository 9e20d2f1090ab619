"""The dependency audit: known vulnerabilities in the installed (locked) set, against accepted exceptions.

Every distribution of the environment the tests run in (the lock's set, the project itself left out) goes to
pip-audit, which asks PyPI's vulnerability data. A finding fails the audit unless ``docs/security.md``
accepts it: a table row whose first cell is the advisory id, then the package, the reason and a review
date (YYYY-MM-DD) that has not passed. When the database cannot be reached the audit says "NOT DONE"
(and annotates a GitHub run) without failing, since an outage says nothing of the dependencies;
``OCR_AUDIT_REQUIRED=1`` makes that a failure too. Evidence goes to ``artifacts/ci/audit/``.

``python -m harness audit`` runs it (a step of :mod:`harness.checks.ci`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.provisioning.lock import canonical
from harness.provisioning.paths import REPO_ROOT

REPO = REPO_ROOT
SECURITY_DOC = REPO / "docs" / "security.md"
OUT = Path("artifacts/ci/audit")
PROJECT = "ocr-platform"
ADVISORY = re.compile(r"(GHSA|PYSEC|CVE|OSV)-")
TIMEOUT_S = 600


def accepted_exceptions(text: str, today: datetime.date) -> tuple[set[str], list[str]]:
    """The advisory ids the security doc accepts, and what is wrong with its exception rows."""
    accepted: set[str] = set()
    bad: list[str] = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if not ADVISORY.match(cells[0]):
            continue
        accepted.add(cells[0])
        if len(cells) < 4 or not cells[2] or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", cells[3]):
            bad.append(f"{cells[0]}: an exception needs a package, a reason and a review date (YYYY-MM-DD)")
        elif cells[3] < today.isoformat():
            bad.append(f"{cells[0]}: its review date {cells[3]} has passed: review it, then renew or remove it")
    return accepted, bad


def installed(exclude: Iterable[str] = (PROJECT,)) -> dict[str, str]:
    """Every distribution of this interpreter's environment: canonical name -> version."""
    skip = {canonical(name) for name in exclude}
    found = {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    return {name: version for name, version in sorted(found.items()) if name not in skip}


@dataclass
class Verdict:
    """What the audit concluded: lines to print, GitHub annotations, and whether it fails."""

    lines: list[str] = field(default_factory=list)
    annotations: list[tuple[str, str]] = field(default_factory=list)  # (error|warning, text)
    failed: bool = False

    def say(self, kind: str, text: str) -> None:
        self.lines.append(text)
        self.annotations.append((kind, text))


def judge(
    report: Mapping[str, Any] | None,
    *,
    returncode: int,
    audited: int,
    accepted: set[str],
    bad_exceptions: list[str],
    log_tail: str = "",
    required: bool = False,
) -> Verdict:
    """The verdict on pip-audit's JSON ``report`` (None when it wrote none) for ``audited`` dependencies."""
    verdict = Verdict()
    if report is not None:
        deps: list[Mapping[str, Any]] | None = list(report.get("dependencies", []))
    elif returncode == 0:
        deps = []  # pip-audit writes no report when every dependency was audited and nothing was found
    else:
        deps = None
    findings: list[str] = []
    known: list[str] = []
    skipped: list[str] = []
    for dep in deps or []:
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
        for vuln in dep.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no release"
            line = f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixed})"
            (known if ids & accepted else findings).append(line)
    verdict.lines += [f"accepted (docs/security.md): {line}" for line in known]
    for line in findings:
        verdict.say("error", f"known vulnerability: {line}")
    for line in bad_exceptions:
        verdict.say("error", line)
    verdict.failed = bool(findings or bad_exceptions)
    if deps is None or (skipped and len(skipped) >= audited):
        if deps is None:
            why = f"pip-audit could not complete (exit {returncode}): {log_tail}"
        else:
            why = f"PyPI's vulnerability data answered for none of them (first: {skipped[0]})"
        outcome = (
            "a failure: OCR_AUDIT_REQUIRED=1"
            if required
            else "not a failure: an unreachable database says nothing of the dependencies "
            "(OCR_AUDIT_REQUIRED=1 makes it one)"
        )
        verdict.say("error" if required else "warning", f"NOT DONE: {audited} dependencies unaudited: {why}; {outcome}")
        verdict.failed = verdict.failed or required
        return verdict
    for line in skipped:
        verdict.say("warning", f"not audited: {line}")
    verdict.lines.append(
        f"{audited - len(skipped)} of {audited} dependencies audited; "
        f"{len(findings)} unaccepted and {len(known)} accepted known vulnerabilities"
    )
    return verdict


def pip_audit_argv(requirements: Path, report: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
        "--vulnerability-service", "pypi", "--progress-spinner", "off", "--format", "json",
        "--output", str(report),
    ]  # fmt: skip


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    requirements, report = OUT / "requirements.txt", OUT / "audit.json"
    report.unlink(missing_ok=True)
    deps = installed()
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in deps.items()))
    with (OUT / "pip-audit.log").open("w") as log:
        done = subprocess.run(
            pip_audit_argv(requirements, report), stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False
        )
    accepted, bad = accepted_exceptions(SECURITY_DOC.read_text(), datetime.date.today())
    tail = " | ".join((OUT / "pip-audit.log").read_text().strip().splitlines()[-3:])
    verdict = judge(
        json.loads(report.read_text()) if report.exists() else None,
        returncode=done.returncode,
        audited=len(deps),
        accepted=accepted,
        bad_exceptions=bad,
        log_tail=tail,
        required=os.environ.get("OCR_AUDIT_REQUIRED") == "1",
    )
    for line in verdict.lines:
        print(f"dependency audit: {line}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for kind, text in verdict.annotations:
            print(f"::{kind} title=dependency audit::{text}")
    return 1 if verdict.failed else 0
