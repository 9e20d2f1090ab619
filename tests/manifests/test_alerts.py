"""The alerts fire when they should and stay quiet when they should not (promtool's rule unit tests)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness.manifests.objects import Obj
from tests.manifests.helpers import the

Rendered = Callable[[str], list[Obj]]
EVAL_TIME = "25m"


def requests(errors_per_min: int, ok_per_min: int) -> list[dict[str, str]]:
    route = 'route="/predict",method="POST"'
    return [
        {"series": f'ocr_http_requests_total{{{route},status="500"}}', "values": f"0+{errors_per_min}x30"},
        {"series": f'ocr_http_requests_total{{{route},status="200"}}', "values": f"0+{ok_per_min}x30"},
    ]


def latency(bucket: str) -> list[dict[str, str]]:
    """60 requests a minute, all slower than the previous bucket bound and within ``bucket``."""
    bounds = ["1", "5", "10", "+Inf"]
    series = []
    for bound in bounds:
        rate = 60 if bounds.index(bound) >= bounds.index(bucket) else 0
        labels = f'route="/predict",method="POST",le="{bound}"'
        series.append({"series": f"ocr_http_request_duration_seconds_bucket{{{labels}}}", "values": f"0+{rate}x30"})
    return series


def jobs(failed_per_min: int, processed_per_min: int) -> list[dict[str, str]]:
    return [
        {"series": "ocr_jobs_failed_total", "values": f"0+{failed_per_min}x30"},
        {"series": "ocr_jobs_processed_total", "values": f"0+{processed_per_min}x30"},
    ]


WARNING = {"severity": "warning"}
# (alert, input series, labels of the alert expected to fire, or None for no alert)
CASES = [
    ("OcrHighErrorRatio", requests(10, 90), WARNING),
    ("OcrHighErrorRatio", requests(1, 99), None),
    ("OcrHighLatencyP95", latency("10"), {**WARNING, "route": "/predict"}),
    ("OcrHighLatencyP95", latency("1"), None),
    ("OcrJobsQueueLagHigh", [{"series": 'ocr_jobs_queue_lag{pod="w"}', "values": "500x30"}], WARNING),
    ("OcrJobsQueueLagHigh", [{"series": 'ocr_jobs_queue_lag{pod="w"}', "values": "50x30"}], None),
    ("OcrJobsFailing", jobs(20, 80), WARNING),
    ("OcrJobsFailing", jobs(1, 99), None),
]


@pytest.mark.parametrize(
    ("alert", "series", "labels"), CASES, ids=[f"{a}-{'fires' if f else 'quiet'}" for a, _, f in CASES]
)
def test_alert(
    alert: str, series: list[dict[str, str]], labels: dict[str, str] | None, rendered: Rendered, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    groups = the(rendered("milestone1"), "PrometheusRule", "ocr")["spec"]["groups"]
    for group in groups:
        for entry in group["rules"]:
            entry.pop("annotations", None)  # their wording is not under test here; promtool check covers syntax
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    expected = [{"exp_labels": labels}] if labels else []
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": EVAL_TIME, "alertname": alert, "exp_alerts": expected}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
