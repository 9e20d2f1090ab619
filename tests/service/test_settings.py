import pytest

from service.images import REFERENCE_BYTES_PER_PIXEL
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
        ("OCR_MAX_PIXELS", "-1"),
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


# -- the memory budget: the pixel limit is derived from it, and settings that do not fit are refused -----


def test_pixel_limit_is_derived_from_the_memory_limit() -> None:
    assert load_settings().max_pixels == 40_000_000  # the documented limit fits 1024 MiB
    smaller = load_settings(memory_limit_mb=768)
    assert 4_000_000 <= smaller.max_pixels < 40_000_000
    budget = smaller.memory_budget()
    # One decode at the widest common format's cost fits what the budget leaves each decode.
    assert smaller.max_pixels * REFERENCE_BYTES_PER_PIXEL <= budget.per_decode_mib() * 2**20


def test_a_longer_waiting_line_leaves_fewer_pixels() -> None:
    assert load_settings(max_queue=64).max_pixels < load_settings(max_queue=8).max_pixels


def test_a_pixel_limit_beyond_the_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_MAX_PIXELS", "90000000")
    with pytest.raises(SettingsError, match="OCR_MAX_PIXELS=90000000 does not fit the memory budget"):
        load_settings()
    monkeypatch.setenv("OCR_MEMORY_LIMIT_MB", "4096")
    assert load_settings().max_pixels == 90_000_000


def test_concurrency_the_memory_cannot_hold_is_refused_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_MAX_CONCURRENCY", "4")
    with pytest.raises(SettingsError, match="OCR_MEMORY_LIMIT_MB=1024 is too little for OCR_MAX_CONCURRENCY=4"):
        load_settings()
    monkeypatch.setenv("OCR_MEMORY_LIMIT_MB", "3072")
    assert load_settings().max_concurrency == 4


@pytest.mark.parametrize("var", ["OCR_UPLOAD_TIMEOUT_S", "OCR_UPLOAD_IDLE_TIMEOUT_S", "OCR_HEADER_TIMEOUT_S"])
def test_every_wait_has_a_positive_deadline(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "0")
    with pytest.raises(SettingsError, match=var):
        load_settings()
