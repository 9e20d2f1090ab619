"""The mutmut score: killed over judged, uncovered code reported apart, the floor enforced."""

from __future__ import annotations

import tomllib

from harness.checks import mutscore
from harness.checks.mutscore import ROOT, parse_results, score

RESULTS = """\
    harness.acceptance.rollout.x_check_version__mutmut_7: survived
    harness.acceptance.rollout.x_check_version__mutmut_8: killed
    harness.provisioning.kube.facts.x_pod_name__mutmut_1: killed
    harness.provisioning.kube.facts.x_pod_name__mutmut_2: killed
    harness.acceptance.rollout.x_register__mutmut_3: no tests
    harness.acceptance.rollout.x_xǁSteadyLoadǁ_run__mutmut_4: timeout
"""


def test_the_score_is_killed_over_killed_and_survived() -> None:
    statuses = parse_results(RESULTS)
    assert statuses["harness.acceptance.rollout.x_register__mutmut_3"] == "no tests"
    result = score(statuses)
    assert result["score"] == 0.75  # 3 killed of 4 judged; "no tests" and the timeout are counted apart
    assert result["counts"] == {"killed": 3, "no tests": 1, "survived": 1, "timeout": 1}
    assert result["survivors"] == ["harness.acceptance.rollout.x_check_version__mutmut_7"]
    assert score({})["score"] == 0.0  # nothing judged is no score, never a pass by default


def test_mutmut_mutates_the_pure_modules_and_runs_their_tests() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    for module in config["only_mutate"]:
        assert (ROOT / module).is_file(), module
    for tests in config["pytest_add_cli_args_test_selection"]:
        assert (ROOT / tests).is_file(), tests
    assert 0.5 <= mutscore.MIN_SCORE < 1
