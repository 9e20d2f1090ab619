import json
from pathlib import Path

from harness.acceptance.evidence import RunEvidence, ScenarioOutcome, slug


def test_scenario_records_and_repeats(tmp_path: Path) -> None:
    run = RunEvidence(tmp_path, target="local")
    ev = run.scenario("Rate limit", "A client over its limit is throttled")
    ev.record("status", 200)
    ev.record("status", 429)
    data = json.loads((ev.path / "observations.json").read_text())
    assert data["status"] == [200, 429]
    assert ev.path == tmp_path / "rate-limit" / "a-client-over-its-limit-is-throttled"


def test_summary_lists_outcomes_and_reasons(tmp_path: Path) -> None:
    run = RunEvidence(tmp_path, target="local")
    run.add(ScenarioOutcome("F", "S1", "f::s1", "passed", 1.234, figures={"admitted": 101}))
    run.add(ScenarioOutcome("F", "S2", "f::s2", "skipped", 0, reason="needs istio; target local does not provide it"))
    md = run.write_summary().read_text()
    assert "1 passed, 1 skipped" in md
    assert "needs istio; target local does not provide it" in md and "admitted=101" in md
    assert json.loads((tmp_path / "summary.json").read_text())["counts"] == {"passed": 1, "skipped": 1}


def test_slug() -> None:
    assert slug("Bad input [a GIF image-415]") == "bad-input-a-gif-image-415"
    assert slug("!!!") == "unnamed"
