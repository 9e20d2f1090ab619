"""The authorizer's settings: one validated object read once from the environment, as the service's own.

Each field is ``OCR_AUTHZ_<NAME>``; the log level is the platform's ``OCR_LOG_LEVEL``. A bad value stops
start-up with a message that names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import invalid_settings

ENV_PREFIX = "OCR_AUTHZ_"


class AuthzSettings(BaseSettings):
    """Where the key hashes are, where the checks and the health probe are answered, how often to reload."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True)

    hashes_file: Path = Field(Path("/etc/ocr-authz/hashes.jsonl"), description="the Secret's file of key hashes")
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535, description="where Envoy's ext_authz checks are answered")
    health_port: int = Field(8081, ge=0, le=65535, description="/healthz and /readyz")
    reload_s: float = Field(1.0, gt=0, description="how often the hashes file is read again (rotation, revocation)")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", validation_alias="OCR_LOG_LEVEL")


def load_authz_settings(**overrides: object) -> AuthzSettings:
    """Read the settings from the environment; raise SettingsError naming each bad variable."""
    try:
        return AuthzSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise invalid_settings(exc.errors(), ENV_PREFIX) from exc
