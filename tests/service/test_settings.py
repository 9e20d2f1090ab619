import subprocess
import sys

import pytest

from service import allocator
from service import settings as settings_module
from service.errors import SettingsError
from service.images import REFERENCE_BYTES_PER_PIXEL
from service.limits import default_concurrency, default_threads
from service.settings import PAGE_300_DPI_PIXELS, load_settings


def cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The process may use ``n`` CPUs (what service.cgroup reads from the cgroup and the affinity)."""
    monkeypatch.setattr(settings_module, "available_cpus", lambda: n)


@pytest.fixture(autouse=True)
def one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The predictor pod's CPU limit (1), whatever this machine has; tests that need more say so."""
    cpus(monkeypatch, 1)


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
    assert load_settings().max_pixels == 40_000_000  # the documented limit fits 1024 MiB at one inference
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


# -- the default concurrency and threads, from the CPUs the process may use (docs/benchmarks.md) ---------


@pytest.mark.parametrize(
    ("n", "concurrency", "threads"),
    [(1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 2, 2), (6, 2, 3), (8, 2, 4)],
)
def test_the_default_rule(n: int, concurrency: int, threads: int) -> None:
    assert (default_concurrency(n), default_threads(n, default_concurrency(n))) == (concurrency, threads)


@pytest.mark.parametrize(
    ("n", "concurrency", "threads", "pixels"),
    [(1, 1, 1, 40_000_000), (2, 2, 1, 11_000_000), (4, 2, 2, 11_000_000)],
)
def test_settings_resolve_the_defaults_from_the_cpus(
    monkeypatch: pytest.MonkeyPatch, n: int, concurrency: int, threads: int, pixels: int
) -> None:
    cpus(monkeypatch, n)
    s = load_settings()
    assert (s.max_concurrency, s.intra_op_threads, s.max_pixels) == (concurrency, threads, pixels)
    assert s.max_pixels >= PAGE_300_DPI_PIXELS  # the default keeps a useful pixel limit at 1024 MiB


def test_the_default_concurrency_yields_to_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    # 768 MiB cannot decode a 300-dpi page at two inferences: one it is, with the CPUs for its threads.
    s = load_settings(memory_limit_mb=768)
    assert (s.max_concurrency, s.intra_op_threads) == (1, 2) and s.max_pixels >= PAGE_300_DPI_PIXELS
    # An explicit pixel limit is kept: the default concurrency drops until the budget decodes it.
    monkeypatch.setenv("OCR_MAX_PIXELS", "40000000")
    assert load_settings().max_concurrency == 1
    monkeypatch.setenv("OCR_MEMORY_LIMIT_MB", "2048")
    assert load_settings().max_concurrency == 2


def test_explicit_concurrency_and_threads_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    monkeypatch.setenv("OCR_MAX_CONCURRENCY", "1")
    s = load_settings()
    assert (s.max_concurrency, s.intra_op_threads, s.max_pixels) == (1, 2, 40_000_000)  # the old default
    monkeypatch.setenv("OCR_INTRA_OP_THREADS", "3")
    assert load_settings().intra_op_threads == 3
    monkeypatch.setenv("OCR_MAX_CONCURRENCY", "0")  # 0 is the default: derived
    assert load_settings().max_concurrency == 2


def test_a_negative_concurrency_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_MAX_CONCURRENCY", "-1")
    with pytest.raises(SettingsError, match="OCR_MAX_CONCURRENCY"):
        load_settings()


class _Stop(Exception):
    pass


def _threads_loaded(monkeypatch: pytest.MonkeyPatch, settings: object, concurrency: int | None) -> tuple[int, int]:
    """The (concurrency, threads) ``startup.load_model`` hands the model, without loading it."""
    from service import startup

    seen = []

    def capture(s: object) -> None:
        seen.append((s.max_concurrency, s.intra_op_threads))  # type: ignore[attr-defined]
        raise _Stop

    monkeypatch.setattr(startup, "available_cpus", lambda: 2)
    monkeypatch.setattr(startup.OcrModel, "from_settings", staticmethod(capture))
    with pytest.raises(_Stop):
        startup.load_model(settings, concurrency=concurrency)  # type: ignore[arg-type]
    return seen[0]


def test_a_worker_runs_one_job_with_all_the_cpus_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2)
    api = load_settings()
    assert _threads_loaded(monkeypatch, api, None) == (2, 1)  # the API: two inferences, one thread each
    assert _threads_loaded(monkeypatch, api, 1) == (1, 2)  # a worker: one job, both CPUs
    monkeypatch.setenv("OCR_INTRA_OP_THREADS", "1")
    assert _threads_loaded(monkeypatch, load_settings(), 1) == (1, 1)  # as told


def test_the_mmap_threshold_is_off_by_default_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().malloc_mmap_threshold_kb == 0
    monkeypatch.setenv("OCR_MALLOC_MMAP_THRESHOLD_KB", "1024")
    assert load_settings().malloc_mmap_threshold_kb == 1024
    monkeypatch.setenv("OCR_MALLOC_MMAP_THRESHOLD_KB", str(64 * 1024))
    with pytest.raises(SettingsError, match="OCR_MALLOC_MMAP_THRESHOLD_KB"):
        load_settings()


@pytest.mark.skipif(allocator._LIBC is None, reason="glibc only")
def test_the_allocator_takes_both_settings_on_glibc() -> None:
    # In a process of its own: a fixed mmap threshold would stay for the rest of this test session.
    code = "from service import allocator; assert allocator.configure(1 << 20); allocator.trim()"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
