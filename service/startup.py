"""The one start-up of the API and the workers: settings, logging, the model.

``python -m service`` and ``python -m service.jobs.worker`` both begin with :func:`boot` (settings read and
checked, logging configured; a bad setting exits 2 naming the variable) and get their model from
:func:`load_model` (loaded from the settings and warmed by one inference; a missing or broken model
file raises ``ModelLoadError``, exit 3). :func:`check_model_files` fails fast before a port opens.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from service import allocator, logs, models
from service.cgroup import available_cpus
from service.errors import SettingsError
from service.limits import default_threads
from service.models.ocr import OcrModel
from service.settings import ServiceSettings, load_settings

EXIT_BAD_SETTINGS = 2
EXIT_NO_MODEL = 3
EXIT_PORT = 4  # the port (OCR_PORT) is taken or cannot be opened

log = logging.getLogger("service.startup")


def boot(prog: str, **overrides: object) -> ServiceSettings:
    """Configure JSON logging, read the settings, set the allocator up. A bad setting is one JSON line
    (level critical, naming the variable) and exit 2."""
    logs.configure()  # every line is JSON from the first one; the level is the settings' once they are read
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        log.critical("%s cannot start: %s", prog, exc)
        raise SystemExit(EXIT_BAD_SETTINGS) from exc
    logs.configure(settings.log_level)
    if not allocator.configure(settings.malloc_mmap_threshold_kb * 1024):
        log.warning("the C library is not glibc: freed memory may stay resident (see service.allocator)")
    return settings


def check_model_files(settings: ServiceSettings) -> object:
    """The files of the model ``OCR_MODEL`` selects, checked to exist and be non-empty (``ModelLoadError`` if
    not)."""

    return models.check_files(settings)


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

    ``concurrency`` is how many inferences the process runs at once (the API: ``OCR_MAX_CONCURRENCY``, as
    the settings resolved it; a worker: 1), which sets the onnxruntime threads per inference unless
    ``OCR_INTRA_OP_THREADS`` was given (``service.limits.default_threads``).
    """
    if concurrency is not None and concurrency != settings.max_concurrency:
        update: dict[str, object] = {"max_concurrency": concurrency}
        if "intra_op_threads" not in settings.model_fields_set:
            update["intra_op_threads"] = default_threads(available_cpus(), concurrency)
        settings = settings.model_copy(update=update)
    start = time.perf_counter()
    model = OcrModel.from_settings(settings)
    loaded = time.perf_counter()
    warmup_s = model.warm_up()
    label_version(model, settings)
    return LoadedModel(model=model, load_s=loaded - start, warmup_s=warmup_s)


def label_version(model: Any, settings: ServiceSettings) -> None:
    """Report ``OCR_MODEL_VERSION``, when set, as the model's version (its digest still names its files: a
    rollout can be labelled and observed with the same files), and name the model on every later log line."""
    if settings.model_version:
        model.info = dataclasses.replace(model.info, version=settings.model_version)
    info = model.info
    logs.set_process_fields(model_name=info.name, model_version=info.version, model_digest=getattr(info, "digest", ""))
