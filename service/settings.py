"""Service settings: one validated object, read once from ``OCR_*`` environment variables at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.cgroup import available_cpus
from service.errors import invalid_settings
from service.images import REFERENCE_BYTES_PER_PIXEL
from service.limits import MemoryBudget, default_concurrency, default_threads

ENV_PREFIX = "OCR_"
MIN_PIXELS = 4_000_000  # a budget below this serves nothing useful
PAGE_300_DPI_PIXELS = 8_700_000  # an A4 page at 300 dpi: the default concurrency keeps at least this
DEFAULT_MAX_PIXELS = 40_000_000  # the documented limit, when the memory budget allows it


class ServiceSettings(BaseSettings):
    """Everything the API and the worker can be told. Each field is the variable ``OCR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    model: Literal["ocr", "layout", "table"] = Field(
        "ocr", description="the model served (service.models): ocr, layout or table"
    )
    model_dir: Path | None = None
    model_name: str = "pp-ocr"
    model_version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$",
        description="the version every response, log line and ocr_model_info reports (a rollout's label);"
        " default: the runtime's version and a digest of the model files",
    )
    det_limit_type: Literal["max", "min"] = "max"
    det_limit_side_len: int = Field(960, ge=32, le=4096)
    angle_cls: bool = Field(False, description="run the angle classifier on each line (for upside-down text)")
    rec_batch_size: int = Field(1, ge=1, le=64, description="text lines recognised per onnxruntime call")
    intra_op_threads: int = Field(
        0, ge=0, le=256, description="0: the CPUs the process may use, shared among OCR_MAX_CONCURRENCY"
    )

    malloc_mmap_threshold_kb: int = Field(
        0,
        ge=0,
        le=32 * 1024,
        description="0: glibc's own; N: each block of N KiB or more its own mapping (less resident, fewer pages/s)",
    )

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    memory_limit_mb: int = Field(1024, ge=128, description="the memory the API may use: its container's limit")
    max_pixels: int = Field(
        0, ge=0, description="largest image in pixels; 0: 40 M, or less if OCR_MEMORY_LIMIT_MB cannot decode that"
    )
    request_timeout_s: float = Field(30.0, gt=0)
    upload_timeout_s: float = Field(60.0, gt=0, description="the whole request body must arrive within this")
    upload_idle_timeout_s: float = Field(10.0, gt=0, description="longest wait for the next bytes of a body")
    upload_min_rate_bps: int = Field(
        16 * 1024, ge=0, description="after the grace period a body arrives at least this fast (bytes/s); 0: off"
    )
    upload_grace_s: float = Field(2.0, gt=0, description="how long a body may arrive slower than the minimum rate")
    header_timeout_s: float = Field(10.0, gt=0, description="a request head must arrive within this")
    max_concurrency: int = Field(
        0,
        ge=0,
        le=64,
        description="inferences at once; 0: one per CPU the process may use, at most 2, fewer if the memory"
        " budget would then not take a 300-dpi page (docs/benchmarks.md)",
    )
    max_queue: int = Field(8, ge=0, le=10_000)
    shutdown_drain_s: float = Field(2.0, ge=0, le=300)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_s: float = Field(2.0, ge=0.2, le=60, description="deadline of one Redis call")
    jobs_stream: str = Field("ocr:jobs", min_length=1)
    jobs_group: str = Field("ocr-workers", min_length=1)
    jobs_stream_maxlen: int = Field(100_000, ge=100)
    jobs_queue_max_bytes: int = Field(128 * 1024 * 1024, ge=1, description="image bytes of the jobs still to do")
    job_ttl_s: int = Field(86_400, ge=1)
    max_attempts: int = Field(3, ge=1, le=100)
    visibility_timeout_s: float = Field(60.0, gt=0)
    worker_port: int = Field(9090, ge=0, le=65535)
    worker_name: str | None = None

    @field_validator("model_dir")
    @classmethod
    def _model_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    def memory_budget(self) -> MemoryBudget:
        return self._budget(self.max_concurrency)

    @model_validator(mode="after")
    def _resolve_concurrency(self) -> ServiceSettings:
        """``OCR_MAX_CONCURRENCY=0`` and ``OCR_INTRA_OP_THREADS=0`` resolved once, here, from the CPUs (frozen
        model: the derived values are written as if they had been given)."""
        cpus = available_cpus()
        if self.max_concurrency == 0:
            # Fewer inferences when the memory limit would then not decode the pixel limit asked for (a
            # 300-dpi page when none is): the budget validator below would refuse to start.
            need = self.max_pixels or PAGE_300_DPI_PIXELS
            concurrency = default_concurrency(cpus)
            while concurrency > 1 and self._budget(concurrency).max_pixels(REFERENCE_BYTES_PER_PIXEL) < need:
                concurrency -= 1
            object.__setattr__(self, "max_concurrency", concurrency)
        if self.intra_op_threads == 0:
            object.__setattr__(self, "intra_op_threads", default_threads(cpus, self.max_concurrency))
        return self

    def _budget(self, concurrency: int) -> MemoryBudget:
        return MemoryBudget(
            limit_mib=self.memory_limit_mb,
            concurrency=concurrency,
            queue=self.max_queue,
            max_upload_bytes=self.max_upload_bytes,
        )

    @model_validator(mode="after")
    def _pixels_fit_the_memory_budget(self) -> ServiceSettings:
        budget = self.memory_budget()
        allowed = budget.max_pixels(REFERENCE_BYTES_PER_PIXEL)
        if allowed < MIN_PIXELS:
            raise ValueError(
                f"OCR_MEMORY_LIMIT_MB={self.memory_limit_mb} is too little for OCR_MAX_CONCURRENCY="
                f"{self.max_concurrency}, OCR_MAX_QUEUE={self.max_queue} and OCR_MAX_UPLOAD_BYTES="
                f"{self.max_upload_bytes}: {budget.explain()}"
            )
        if self.max_pixels == 0:
            # Frozen model: the derived value is written once, here, as if it had been given.
            object.__setattr__(self, "max_pixels", min(DEFAULT_MAX_PIXELS, allowed // 1_000_000 * 1_000_000))
        elif self.max_pixels > allowed:
            raise ValueError(
                f"OCR_MAX_PIXELS={self.max_pixels} does not fit the memory budget (at most {allowed}):"
                f" {budget.explain()}"
            )
        return self

    @model_validator(mode="after")
    def _visibility_beyond_timeout(self) -> ServiceSettings:
        if self.visibility_timeout_s <= self.request_timeout_s:
            raise ValueError(
                "OCR_VISIBILITY_TIMEOUT_S must be longer than OCR_REQUEST_TIMEOUT_S, or a live worker's job"
                " would be claimed by another"
            )
        return self

    @model_validator(mode="after")
    def _largest_upload_fits_the_queue(self) -> ServiceSettings:
        if self.jobs_queue_max_bytes < self.max_upload_bytes:
            raise ValueError(
                "OCR_JOBS_QUEUE_MAX_BYTES must be at least OCR_MAX_UPLOAD_BYTES, or the largest upload could never"
                " be queued"
            )
        return self


def load_settings(**overrides: object) -> ServiceSettings:
    """Read the settings from the environment; raise SettingsError naming each bad variable."""
    try:
        return ServiceSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise invalid_settings(exc.errors(), ENV_PREFIX) from exc
