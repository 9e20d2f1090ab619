"""The run report, built from evidence written by the harness's own writers, and read by a real browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from harness.acceptance import report
from harness.acceptance.evidence import RunEvidence, ScenarioOutcome
from harness.acceptance.report import plots
from harness.errors import HarnessError

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,"
    "Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
    "Total Min Response Time,Total Max Response Time,Total Average Content Size\n"
    "1000,0,,Aggregated,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0,0,0,0\n"
    "1001,8,,Aggregated,4.0,0.0,600,0,0,0,0,900,0,0,0,0,0,4,0,0,0,0,0,0\n"
    "1002,8,,Aggregated,7.5,0.5,650,0,0,0,0,1200,0,0,0,0,0,12,1,0,0,0,0,0\n"
)


def recorded_run(root: Path) -> Path:
    """A run with a passed scaling scenario (load, a timeline with its threshold), a failed rate-limit
    scenario (per-second counts, a failing step) and a skipped one, as the plugin and steps write them."""
    run = RunEvidence(root=root / "20261127-000000-abcd", target="local")
    run.facts.update(profile=None, gateway="HAProxy 2.6.12 on loopback", started_at="2026-11-27 00:00:00 UTC")
    scaling = run.scenario("The predictor scales", "CPU load scales it out")
    scaling.record("readyz", {"status": 200, "body": {"model": {"name": "pp-ocr", "version": "3.10.0+5ff02e508fe4"}}})
    scaling.write_json(
        "timeline-predictor-at-least-3-replicas",
        {
            "what": "predictor at least 3 replicas", "mode": "within", "seconds": 300, "threshold": 3,
            "started_at": 1000.0,
            "samples": [
                {"t": 0, "at": 1000.0, "value": {"ready": 1, "hpa": {"desired": 1, "cpu_utilization": 20}}},
                {"t": 3, "at": 1003.0, "value": {"ready": 2, "hpa": {"desired": 4, "cpu_utilization": 140}}},
                {"t": 6, "at": 1006.0, "value": {"ready": 4, "hpa": {"desired": 4, "cpu_utilization": 80}}},
            ],
        },
    )  # fmt: skip
    (scaling.path / "load").mkdir(parents=True)
    (scaling.path / "load" / "locust_stats_history.csv").write_text(HISTORY)
    limited = run.scenario("Each API key is limited", "A client over its limit is throttled")
    limited.record(
        "per_second", {"team-a": {"0": {"served": 10, "refused: limit": 10}, "1": {"served": 10, "refused: limit": 10}}}
    )
    limited.record("rate_limit_per_s", 10)
    limited.record("failed_step", {"step": "Then between 90 and 110 of its requests are admitted", "line": 13,
                                   "error": "AssertionError: {200: 46, 429: 154}"})  # fmt: skip
    run.add(ScenarioOutcome("The predictor scales", "CPU load scales it out", "x", "passed", 12.0, None, {}))
    run.add(ScenarioOutcome("Each API key is limited", "A client over its limit is throttled", "y", "failed", 10.5,
                            "assert 90 <= 46", {}))  # fmt: skip
    run.add(ScenarioOutcome("Only keys", "A pod outside the mesh", "z", "skipped", 0.0, "needs istio, k8s", {}))
    run.write_summary()
    return run.root


def test_the_report_shows_the_run_its_failures_and_every_picture(tmp_path: Path) -> None:
    path = report.build(recorded_run(tmp_path))
    html = path.read_text()
    assert "HAProxy 2.6.12 on loopback" in html and "pp-ocr 3.10.0+5ff02e508fe4" in html
    assert "1 failed" in html and "1 passed" in html and "1 skipped" in html
    # The failing Gherkin step and its message, not a pytest location.
    assert "Then between 90 and 110 of its requests are admitted" in html and "{200: 46, 429: 154}" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3  # load, the scaling timeline, the per-second counts
    for encoded in images:
        data = base64.b64decode(encoded)
        assert data.startswith(PNG) and len(data) > 5000
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained


def test_a_local_run_names_no_cluster_pins_and_shows_the_mutation_score(tmp_path: Path) -> None:
    run_dir = recorded_run(tmp_path)
    html = report.build(run_dir).read_text()
    assert "platform pins" not in html and "Kubernetes 1." not in html  # nothing ran on Kubernetes
    assert "mutation score" not in html  # no mutation run beside it
    (tmp_path / "mutate").mkdir()
    results = [{"id": "a", "verdict": "caught"}, {"id": "gateway-limit-times-100", "verdict": "SURVIVED"}]
    (tmp_path / "mutate" / "results.json").write_text(json.dumps({"caught": 1, "total": 2, "results": results}))
    html = report.build(run_dir).read_text()
    assert "1 of 2 mutations caught" in html and "<code>gateway-limit-times-100</code>" in html


def test_latest_points_at_the_newest_run(tmp_path: Path) -> None:
    first = recorded_run(tmp_path / "a")
    link = report.point_latest(first)
    assert link.resolve() == first.resolve()
    second = first.parent / "20261127-000001-efgh"
    second.mkdir()
    report.point_latest(second)
    assert link.resolve() == second.resolve() and link.readlink() == Path(second.name)


def test_a_folder_without_a_summary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"no summary\.json"):
        report.build(tmp_path)


def test_timelines_are_split_into_numeric_series() -> None:
    samples = [
        {"t": 0, "value": {"ready": 1, "hpa": {"desired": 2, "able": True}, "note": "x"}},
        {"t": 2, "value": {"ready": 3, "hpa": {"desired": 3, "able": True}}},
        {"t": 4, "value": {"error": "TimeoutError: read timed out"}},
    ]
    assert plots.timeline_series(samples) == {
        "ready": [(0.0, 1.0), (2.0, 3.0)],
        "hpa.desired": [(0.0, 2.0), (2.0, 3.0)],
    }
    assert plots.timeline({"samples": [{"t": 0, "value": "text only"}]}) is None


def test_locust_history_rows(tmp_path: Path) -> None:
    history = tmp_path / "locust_stats_history.csv"
    history.write_text(HISTORY)
    rows = plots.read_locust_history(history)
    assert [r["rps"] for r in rows] == [0.0, 4.0, 7.5]
    assert rows[2]["p95"] == 1200.0 and rows[0]["p50"] != rows[0]["p50"]  # N/A is NaN


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_real_browser_renders_the_report(tmp_path: Path) -> None:
    path = report.build(recorded_run(tmp_path))
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,3000"]
    result = subprocess.run(
        ["chromium", *flags, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 50_000
    # The page logs nothing to its console (no script, no broken resource).
    assert not [line for line in result.stderr.splitlines() if "CONSOLE" in line], result.stderr[-2000:]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    loaded = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert len(loaded) == 3, loaded
    assert json.dumps("CPU load scales it out")[1:-1] in dom


def test_the_per_second_plot_says_who_answered_and_draws_the_limit() -> None:
    counts = {"team-a": {"0": {"served": 10, "refused: limit": 9, "service 5xx": 1},
                         "1": {"served": 8, "gateway 5xx": 2, "transport": 1}}}  # fmt: skip
    figure = plots.per_second_figure(counts, limit=10)
    (axis,) = figure.axes
    labels = axis.get_legend_handles_labels()[1]
    assert labels == [
        "limit: 10 per second per key", "served by the service (2xx)", "refused by the gateway: over the limit (429)",
        "failed in the service (5xx)", "failed at the gateway (5xx)", "no answer (transport error)",
    ]  # fmt: skip
    (line,) = axis.get_lines()
    assert list(line.get_ydata()) == [10, 10]
    # A failure is drawn in its own colour, never as an admitted (green) request.
    bars = {c.get_label(): c for c in axis.containers}
    assert bars["failed in the service (5xx)"].patches[0].get_facecolor()[:3] != bars[
        "served by the service (2xx)"].patches[0].get_facecolor()[:3]  # fmt: skip
    assert [p.get_height() for p in bars["failed at the gateway (5xx)"].patches] == [0, 2]
    assert bars["no answer (transport error)"].patches[1].get_y() == 10  # stacked on the 8 served and 2 failed
    plt.close(figure)


def test_labels_read_as_words_and_a_flat_series_sits_on_a_readable_axis() -> None:
    assert plots.series_label("counts.succeeded") == "counts: succeeded"
    assert plots.series_label("hpa.cpu_utilization") == "hpa: cpu utilization"
    figure, axis = plt.subplots()
    axis.plot([0, 1, 2], [0, 0, 0])
    plots._floor_flat_axis(axis, [0, 0, 0])
    low, high = axis.get_ylim()
    assert low < 0 < 1 <= high, (low, high)
    plt.close(figure)
