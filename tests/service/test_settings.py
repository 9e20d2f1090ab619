import pytest

from service.settings import SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings()
    assert (s.port, s.max_upload_bytes, s.max_pixels, s.request_timeout_s) == (8080, 10 * 1024 * 1024, 40_000_000, 30)
    assert (s.jobs_stream, s.jobs_group) == ("ocr:jobs", "ocr-workers")


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_MAX_QUEUE", "3")
    monkeypatch.setenv("OCR_DET_LIMIT_TYPE", "min")
    s = load_settings()
    assert s.max_queue == 3 and s.det_limit_type == "min"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OCR_MAX_PIXELS", "0"),
        ("OCR_PORT", "70000"),
        ("OCR_REQUEST_TIMEOUT_S", "-1"),
        ("OCR_DET_LIMIT_TYPE", "medium"),
        ("OCR_MODEL_DIR", "/no/such/dir"),
        ("OCR_MAX_CONCURRENCY", "lots"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings()


def test_visibility_timeout_must_exceed_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_REQUEST_TIMEOUT_S", "90")
    with pytest.raises(SettingsError, match="OCR_VISIBILITY_TIMEOUT_S"):
        load_settings()
