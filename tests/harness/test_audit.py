"""The dependency audit's verdict: findings against docs/security.md's accepted exceptions."""

from __future__ import annotations

import datetime

from harness.checks import audit

TODAY = datetime.date(2026, 12, 6)
DOC = """
| advisory | package | reason | review by |
|---|---|---|---|
| `GHSA-aaaa-bbbb-cccc` | pillow | not reachable: no such decoder is enabled | 2027-01-31 |
| PYSEC-2026-1 | numpy | expired | 2026-12-01 |
| CVE-2026-0001 |  |  |  |
| not an advisory | x | y | 2030-01-01 |
"""


def _dep(name: str, *vulns: tuple[str, list[str]], version: str = "1.0") -> dict:
    return {
        "name": name,
        "version": version,
        "vulns": [{"id": i, "aliases": a, "fix_versions": ["2.0"]} for i, a in vulns],
    }


def test_accepted_exceptions_need_a_package_a_reason_and_a_future_review_date() -> None:
    accepted, bad = audit.accepted_exceptions(DOC, TODAY)
    assert accepted == {"GHSA-aaaa-bbbb-cccc", "PYSEC-2026-1", "CVE-2026-0001"}
    assert bad == [
        "PYSEC-2026-1: its review date 2026-12-01 has passed: review it, then renew or remove it",
        "CVE-2026-0001: an exception needs a package, a reason and a review date (YYYY-MM-DD)",
    ]


def test_a_finding_fails_unless_accepted_by_id_or_alias() -> None:
    report = {"dependencies": [_dep("pillow", ("PYSEC-1", ["GHSA-aaaa-bbbb-cccc"])), _dep("six")]}
    verdict = audit.judge(report, returncode=1, audited=2, accepted={"GHSA-aaaa-bbbb-cccc"}, bad_exceptions=[])
    assert not verdict.failed
    assert verdict.lines[-1] == "2 of 2 dependencies audited; 0 unaccepted and 1 accepted known vulnerabilities"

    report = {"dependencies": [_dep("numpy", ("PYSEC-2", []))]}
    verdict = audit.judge(report, returncode=1, audited=1, accepted={"GHSA-aaaa-bbbb-cccc"}, bad_exceptions=[])
    assert verdict.failed
    assert ("error", "known vulnerability: numpy 1.0: PYSEC-2 (fixed in: 2.0)") in verdict.annotations


def test_a_bad_exception_fails_a_clean_audit() -> None:
    verdict = audit.judge(None, returncode=0, audited=3, accepted=set(), bad_exceptions=["X: bad"])
    assert verdict.failed
    assert "3 of 3 dependencies audited" in verdict.lines[-1]


def test_an_unreachable_database_is_not_done_and_fails_only_when_required() -> None:
    for required in (False, True):
        verdict = audit.judge(
            None, returncode=1, audited=5, accepted=set(), bad_exceptions=[], log_tail="timed out", required=required
        )
        assert verdict.failed is required
        assert verdict.lines[-1].startswith("NOT DONE: 5 dependencies unaudited: pip-audit could not complete (exit 1)")
    skipped = {"dependencies": [{"name": "a", "version": "1", "skip_reason": "no answer"}]}
    verdict = audit.judge(skipped, returncode=1, audited=1, accepted=set(), bad_exceptions=[])
    assert "answered for none of them" in verdict.lines[-1]
    assert not verdict.failed


def test_the_installed_set_is_this_environment_less_the_project() -> None:
    found = audit.installed()
    assert "pytest" in found and "fastapi" in found
    assert "ocr-platform" not in found
