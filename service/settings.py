"""Service settings: one validated object, read once from ``OCR_*`` environment variables at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OCR_"


class SettingsError(Exception):
    """A setting has a value the service refuses; the message names the environment variable."""


class ServiceSettings(BaseSettings):
    """Everything the API and the worker can be told. Each field is the variable ``OCR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    model_dir: Path | None = None
    model_name: str = "pp-ocr"
    det_limit_type: Literal["max", "min"] = "max"
    det_limit_side_len: int = Field(960, ge=32, le=4096)
    angle_cls: bool = Field(False, description="run the angle classifier on each line (for upside-down text)")
    rec_batch_size: int = Field(1, ge=1, le=64, description="text lines recognised per onnxruntime call")
    intra_op_threads: int = Field(0, ge=0, le=256, description="0: from the container's CPU limit")

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    max_concurrency: int = Field(1, ge=1, le=64)
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
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from exc
