"""The one start-up of the API and the workers: settings, logging, the model.

``python -m service`` and ``python -m service.worker`` both begin with :func:`boot` (settings read and
checked, logging configured; a bad setting exits 2 naming the variable) and get their model from
:func:`load_model` (loaded from the settings and warmed by one inference; a missing or broken model
file raises ``ModelLoadError``, exit 3). :func:`check_model_files` fails fast before a port opens.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

from service import logs
from service.model import ModelFiles, OcrModel
from service.settings import ServiceSettings, SettingsError, load_settings

EXIT_BAD_SETTINGS = 2
EXIT_NO_MODEL = 3

log = logging.getLogger("service.startup")


def boot(prog: str, **overrides: object) -> ServiceSettings:
    """Read the settings and configure JSON logging; bad settings print one line and exit 2."""
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from exc
    logs.configure(settings.log_level)
    return settings


def check_model_files(settings: ServiceSettings) -> ModelFiles:
    """The model files the settings name, checked to exist and be non-empty (``ModelLoadError`` if not)."""
    return ModelFiles.from_dir(settings.model_dir) if settings.model_dir is not None else ModelFiles.bundled()


@dataclass(frozen=True)
class LoadedModel:
    model: OcrModel
    load_s: float
    warmup_s: float

    def log_fields(self) -> dict[str, object]:
        return {
            "model_name": self.model.info.name,
            "model_version": self.model.info.version,
            "threads": self.model.threads,
            "load_s": round(self.load_s, 3),
            "warmup_s": round(self.warmup_s, 3),
        }


def load_model(settings: ServiceSettings, *, concurrency: int | None = None) -> LoadedModel:
    """Load the model as the settings describe it and warm it up (blocking: seconds).

    ``concurrency`` is how many inferences the process runs at once (the API: ``OCR_MAX_CONCURRENCY``; a
    worker: 1), which sets the onnxruntime threads per inference when ``OCR_INTRA_OP_THREADS`` is 0.
    """
    if concurrency is not None:
        settings = settings.model_copy(update={"max_concurrency": concurrency})
    start = time.perf_counter()
    model = OcrModel.from_settings(settings)
    loaded = time.perf_counter()
    warmup_s = model.warm_up()
    return LoadedModel(model=model, load_s=loaded - start, warmup_s=warmup_s)
