"""The rules load in promtool, and its unit tests (rules.test.yaml) show every alert firing and quiet.

The rules are the PrometheusRule's ``spec.groups``, extracted into a plain rule file by harness.checks.monitoring;
the same unit tests run in CI through ``python -m harness monitoring promtool``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from harness.checks import monitoring
from harness.provisioning import rules
from harness.provisioning.objects import Obj
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)"
)


def test_the_extracted_rules_are_the_rendered_ones(rendered: Rendered) -> None:
    rule = the(rendered("milestone1"), "PrometheusRule", "ocr")
    assert rule["spec"]["groups"] == rules.rule_groups()


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = monitoring.promtool_check()
    assert result.ok, result.output


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = monitoring.promtool_test()
    assert result.ok, result.output


def test_every_alert_is_shown_firing_and_quiet() -> None:
    shown: dict[str, set[str]] = {}
    for case in monitoring.rules_tests()["tests"]:
        for check in case.get("alert_rule_test", []):
            shown.setdefault(check["alertname"], set()).add("fires" if check["exp_alerts"] else "quiet")
    missing = {a: {"fires", "quiet"} - shown.get(a, set()) for a in monitoring.alerts()}
    assert not {a: m for a, m in missing.items() if m}, "alerts without a firing or a quiet unit test"


def test_every_recording_rule_is_checked_with_a_value() -> None:
    checked = {
        record
        for case in monitoring.rules_tests()["tests"]
        for check in case.get("promql_expr_test", [])
        if check["exp_samples"]
        for record in monitoring.recording_rules()
        if record in check["expr"]
    }
    assert set(monitoring.recording_rules()) - checked == set()


def test_the_slo_is_stated_once() -> None:
    """99.5 %: every burn-rate threshold is a multiple of its 0.5 % error budget."""
    assert monitoring.SLO_TARGET == 0.995
    budget = f"{monitoring.ERROR_BUDGET:.3f}"
    for name in ("OcrSLOBurnRateFast", "OcrSLOBurnRateSlow"):
        rule = monitoring.alerts()[name]
        assert rule["expr"].count(f"* {budget})") == 4, rule["expr"]
        assert rule["labels"]["slo"] == "predict-availability"
    assert "99.5 %" in rules.PROMETHEUS_RULE.read_text()


# (what is broken, the rule, the text replaced, its replacement): each must make the unit tests fail.
BREAKAGES = [
    ("budget doubled", "OcrSLOBurnRateFast", "(14.4 * 0.005)", "(14.4 * 0.01)"),
    ("no short windows", "OcrSLOBurnRateFast", "ratio_rate5m", "ratio_rate1h"),
    ("slow burn's budget tenfold", "OcrSLOBurnRateSlow", " * 0.005)", " * 0.05)"),
    ("not ready when any process is", "OcrServiceNotReady", "sum by", "min by"),
    ("at max only above it", "OcrPredictorAtMaxReplicas", ">=", ">"),
    ("scaled-to-zero revision unavailable", "OcrPredictorUnavailable", "> 0", ">= 0"),
    ("latency threshold raised", "OcrHighLatencyP95", "> 5", "> 10"),
    ("lag summed over exporters", "OcrJobsQueueLagHigh", "max by (namespace) (ocr_jobs_queue_lag) > 100",
     "sum by (namespace) (ocr_jobs_queue_lag) > 600"),
    ("failing ratio threshold raised", "OcrJobsFailing", "> 0.1", "> 0.25"),
    ("error ratio absent without errors", "ocr:http_request_errors:ratio5m",
     'or sum by (namespace) (rate(ocr_http_requests_total[5m])) * 0', ""),
]  # fmt: skip


def unit_tests_of(name: str) -> dict[str, Any]:
    """The unit tests that evaluate one alert or recorded series (a faster run than all of them)."""
    suite = monitoring.rules_tests()
    suite["tests"] = [
        case
        for case in suite["tests"]
        if any(check["alertname"] == name for check in case.get("alert_rule_test", []))
        or any(name in check["expr"] for check in case.get("promql_expr_test", []))
    ]
    assert suite["tests"], f"no unit test evaluates {name}"
    return suite


@needs_promtool
@pytest.mark.parametrize(("what", "name", "old", "new"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_the_unit_tests_catch_a_broken_rule(what: str, name: str, old: str, new: str) -> None:
    groups = rules.rule_groups()
    (rule,) = [r for g in groups for r in g["rules"] if name in (r.get("alert"), r.get("record"))]
    assert old in rule["expr"], f"{what}: {old!r} not in {name}"
    rule["expr"] = rule["expr"].replace(old, new)
    assert monitoring.promtool_check(groups).ok
    result = monitoring.promtool_test(groups=groups, test=unit_tests_of(name))
    assert not result.ok, f"{what}: the unit tests still pass"
