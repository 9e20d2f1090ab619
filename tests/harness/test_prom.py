import pytest

from harness.acceptance.components import prometheus_config
from harness.acceptance.prom import compare


def test_missing_value_never_compares_true() -> None:
    for op in ("above", "below", "at least", "at most", "equal to"):
        assert compare(None, op, 0) is False


@pytest.mark.parametrize(
    ("value", "op", "threshold", "expected"),
    [(1, "above", 0, True), (0, "above", 0, False), (0.5, "below", 1, True), (1, "at least", 1, True),
     (2, "at most", 1, False), (1, "equal to", 1, True)],
)  # fmt: skip
def test_comparisons(value: float, op: str, threshold: float, expected: bool) -> None:
    assert compare(value, op, threshold) is expected


def test_unknown_comparison() -> None:
    with pytest.raises(ValueError):
        compare(1, "around", 1)


def test_generated_config_passes_promtool(tmp_path) -> None:
    import shutil
    import subprocess

    import yaml

    text = prometheus_config({"ocr-service": ["127.0.0.1:8080"], "ocr-worker": ["127.0.0.1:9090"]})
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "1s" and config["global"]["scrape_timeout"] == "1s"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
