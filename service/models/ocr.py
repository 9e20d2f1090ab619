"""The OCR model: PP-OCR detector, angle classifier and recogniser on onnxruntime (``service.models.ppocr``).

The ONNX files ship inside the rapidocr wheel (its package is never imported: only its files are read);
``OCR_MODEL_DIR`` (KServe mounts ``storageUri`` at ``/mnt/models``) replaces them with ``det.onnx``,
``rec.onnx``, ``cls.onnx`` and an optional ``keys.txt``. Nothing is ever downloaded: a recogniser without
its character list and without ``keys.txt`` is refused at start-up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.cgroup import available_cpus
from service.errors import ModelLoadError
from service.geometry import PIPELINE_MAX_SIDE, is_strip
from service.images import SOURCE_SIZE
from service.models import folding, ppocr
from service.models.onnx import session, wheel_dir
from service.models.recognition import BoundedRecognizer
from service.models.schemas import BoxOut, ModelRef, PredictResponse
from service.settings import ServiceSettings

log = logging.getLogger("service.models.ocr")

MODEL_FILES = {"det": "det.onnx", "rec": "rec.onnx", "cls": "cls.onnx"}
KEYS_FILE = "keys.txt"
_WHEEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


@dataclass(frozen=True)
class ModelFiles:
    det: Path
    rec: Path
    cls: Path
    keys: Path | None = None

    @classmethod
    def bundled(cls) -> ModelFiles:
        """The PP-OCR files inside the installed rapidocr wheel (found without importing its package)."""
        root = wheel_dir("rapidocr", "the PP-OCR files") / "models"
        files = cls(**{role: root / name for role, name in _WHEEL_FILES.items()})
        files.check()
        return files

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelFiles:
        keys = model_dir / KEYS_FILE
        files = cls(
            **{role: model_dir / name for role, name in MODEL_FILES.items()},
            keys=keys if keys.is_file() else None,
        )
        files.check()
        return files

    def check(self) -> None:
        for role in MODEL_FILES:
            path: Path = getattr(self, role)
            if not path.is_file():
                raise ModelLoadError(f"model file missing: {path} (the {role} model)")
            if path.stat().st_size == 0:
                raise ModelLoadError(f"model file is empty: {path} (the {role} model)")

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in (self.det, self.rec, self.cls, self.keys):
            if path is not None:
                h.update(path.read_bytes())
        return h.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model's identity: its name, its version (the runtime package's, then the first 12 hex digits
    of the digest) and the SHA-256 of its files."""

    name: str
    version: str
    digest: str = ""


@dataclass(frozen=True)
class Box:
    x1: int
    y1: int
    x2: int
    y2: int
    text: str
    conf: float


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float
    boxes: list[Box] = field(default_factory=list)


Rect = tuple[float, float, float, float]


def _bounds(quad: list[list[float]]) -> Rect:
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def _in_frame(rect: Rect, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds within a width x height frame."""
    x1 = max(0, min(width, int(rect[0])))
    y1 = max(0, min(height, int(rect[1])))
    x2 = max(x1, min(width, round(rect[2])))
    y2 = max(y1, min(height, round(rect[3])))
    return x1, y1, x2, y2


def _rows(boxes: list[Box]) -> list[list[Box]]:
    """Top-to-bottom rows, left-to-right within a row; a box joins a row when its centre lies in it."""
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y1, b.x1)):
        centre = (box.y1 + box.y2) / 2
        for row in rows:
            top = min(b.y1 for b in row)
            bottom = max(b.y2 for b in row)
            if top <= centre <= bottom:
                row.append(box)
                break
        else:
            rows.append([box])
    return [sorted(row, key=lambda b: b.x1) for row in rows]


def reading_order(boxes: list[Box]) -> list[Box]:
    """Top-to-bottom rows, left-to-right within a row; a box joins a row when its centre lies in it."""
    return [b for row in _rows(boxes) for b in row]


def _merged(row: list[Box]) -> Box:
    """One box for a row of boxes (the pieces of one line of a folded strip): their union, their text."""
    return Box(
        x1=min(b.x1 for b in row),
        y1=min(b.y1 for b in row),
        x2=max(b.x2 for b in row),
        y2=max(b.y2 for b in row),
        text=" ".join(b.text for b in row),
        conf=round(sum(b.conf for b in row) / len(row), 4),
    )


def _warmup_image() -> Image.Image:
    image = Image.new("RGB", (320, 64), "white")
    ImageDraw.Draw(image).text((12, 14), "warm up 123", fill="black", font=ImageFont.load_default(size=30))
    return image


class OcrModel:
    """One loaded PP-OCR pipeline. ``read`` (``predict``) is safe to call from worker threads."""

    kind: ClassVar[str] = "ocr"

    def __init__(
        self,
        files: ModelFiles,
        *,
        name: str = "pp-ocr",
        threads: int = 0,
        concurrency: int = 1,
        det_limit_type: str = "max",
        det_limit_side_len: int = 960,
        rec_batch_size: int = 1,
        angle_cls: bool = False,
    ) -> None:
        from importlib.metadata import version

        self.files = files
        if threads <= 0:
            threads = max(1, available_cpus() // max(concurrency, 1))
        self.threads = threads
        digest = files.digest()
        self.info = ModelInfo(name=name, version=f"{version('rapidocr')}+{digest[:12]}", digest=digest)
        settings = ppocr.PipelineSettings(
            threads=threads,
            # The detector's "min" upscales small images to 736 px: 30x slower on a one-word image with the
            # same text read. "max" only shrinks large pages (see docs/benchmarks.md).
            det_limit_type=det_limit_type,
            det_limit_side_len=det_limit_side_len,
            # What the pipeline shrinks images to before detection; the decoder never produces more.
            max_side=PIPELINE_MAX_SIDE,
            # Lines are padded to the widest line of their batch: batches of one keep peak memory ~150 MB
            # lower on pages, with no speed difference beyond run-to-run noise (docs/benchmarks.md).
            rec_batch=rec_batch_size,
            # The 180-degree line classifier flips some long upright lines (2% CER on the benchmark's pages
            # with it, 0% without): off, and its session never made, unless text may be upside down.
            angle_cls=angle_cls,
        )
        rec = session(files.rec, threads)
        alphabet = ppocr.characters(rec, files.keys, files.rec)
        detector = ppocr.Detector(ppocr.infer(session(files.det, threads)), settings)
        classifier = ppocr.Classifier(ppocr.infer(session(files.cls, threads)), settings) if angle_cls else None
        # Lines wider than the recogniser's bound are read in pieces (service.models.recognition): its memory
        # then no longer grows with what the page shows.
        self.recognizer = BoundedRecognizer(ppocr.Recognizer(ppocr.infer(rec), alphabet, settings))
        self._pipeline = ppocr.Pipeline(detector, self.recognizer, classifier, settings)
        self._ready = threading.Event()

    @classmethod
    def load(cls, model_dir: Path | None = None, **kwargs: object) -> OcrModel:
        files = ModelFiles.from_dir(model_dir) if model_dir is not None else ModelFiles.bundled()
        return cls(files, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OcrModel:
        """The model as the settings describe it (the API and the workers load it the same way)."""
        return cls.load(
            settings.model_dir,
            name=settings.model_name,
            threads=settings.intra_op_threads,
            concurrency=settings.max_concurrency,
            det_limit_type=settings.det_limit_type,
            det_limit_side_len=settings.det_limit_side_len,
            rec_batch_size=settings.rec_batch_size,
            angle_cls=settings.angle_cls,
        )

    @staticmethod
    def check_files(settings: ServiceSettings) -> ModelFiles:
        """The files the settings name, checked to exist and be non-empty (``ModelLoadError`` if not)."""
        return ModelFiles.from_dir(settings.model_dir) if settings.model_dir is not None else ModelFiles.bundled()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def warm_up(self) -> float:
        """Run one inference so every session is loaded before readiness; returns its seconds."""
        start = time.perf_counter()
        result = self.read(_warmup_image())
        if not result.boxes:
            raise ModelLoadError("warm-up inference read no text: the model files do not work")
        self._ready.set()
        return time.perf_counter() - start

    def read(self, image: Image.Image) -> OcrResult:
        """OCR one RGB image. Boxes are in the frame of the image as sent: the image's own, or the size it
        carries in ``info[SOURCE_SIZE]`` when it was decoded smaller (``service.images``)."""
        width, height = image.size
        frame_w, frame_h = image.info.get(SOURCE_SIZE) or (width, height)
        sx, sy = frame_w / width, frame_h / height
        found = self._read_strip(image) if is_strip(width, height) else self._read_page(image)
        boxes = reading_order(
            [
                Box(*_in_frame((r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy), frame_w, frame_h), text=t, conf=c)
                for r, t, c in found
            ]
        )
        if not boxes:
            return OcrResult(text="", confidence=0.0, boxes=[])
        confidence = round(sum(b.conf for b in boxes) / len(boxes), 4)
        return OcrResult(text="\n".join(b.text for b in boxes), confidence=confidence, boxes=boxes)

    def _read_page(self, image: Image.Image) -> list[tuple[Rect, str, float]]:
        """Detection and recognition as the pipeline does them: (bounds, text, score) in the image's frame."""
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        return [(_bounds(quad.tolist()), text, round(score, 4)) for quad, text, score in self._pipeline(rgb)]

    def _read_strip(self, image: Image.Image) -> list[tuple[Rect, str, float]]:
        """A long strip, read folded into rows (``service.models.folding``); each of its lines is one box."""
        fold = folding.plan(image)
        pieces = [
            (folding.unfold(rect, fold), text, score)
            for rect, text, score in self._read_page(folding.page(image, fold))
        ]
        wide = fold.size[::-1] if fold.vertical else fold.size
        lines = [
            _merged(row) for row in _rows([Box(*_in_frame(r, wide[0], wide[1]), text=t, conf=c) for r, t, c in pieces])
        ]
        return [(folding.turn_back((b.x1, b.y1, b.x2, b.y2), fold), b.text, b.conf) for b in lines]

    # -- the model plugin's interface (``service.models``) ---------------------------------------

    def predict(self, image: Image.Image) -> OcrResult:
        return self.read(image)

    def response(self, result: OcrResult, *, request_id: str, latency_ms: float) -> PredictResponse:
        return build_predict_response(result, self.info, request_id=request_id, latency_ms=latency_ms)

    @staticmethod
    def oip_outputs_metadata() -> list[dict[str, object]]:
        return [
            {"name": "text", "datatype": "BYTES", "shape": [1]},
            {"name": "confidence", "datatype": "FP32", "shape": [1]},
            {"name": "boxes", "datatype": "INT32", "shape": [-1, 4]},
            {"name": "box_text", "datatype": "BYTES", "shape": [-1]},
            {"name": "box_conf", "datatype": "FP32", "shape": [-1]},
        ]

    @staticmethod
    def oip_outputs(result: OcrResult) -> list[dict[str, object]]:
        n = len(result.boxes)
        return [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": [result.text]},
            {"name": "confidence", "datatype": "FP32", "shape": [1], "data": [result.confidence]},
            {
                "name": "boxes",
                "datatype": "INT32",
                "shape": [n, 4],
                "data": [v for b in result.boxes for v in (b.x1, b.y1, b.x2, b.y2)],
            },
            {"name": "box_text", "datatype": "BYTES", "shape": [n], "data": [b.text for b in result.boxes]},
            {"name": "box_conf", "datatype": "FP32", "shape": [n], "data": [b.conf for b in result.boxes]},
        ]


def build_predict_response(
    result: OcrResult, model: ModelInfo, *, request_id: str, latency_ms: float
) -> PredictResponse:
    """The /predict answer for one OCR result: the API returns it, the worker stores its ``model_dump()``
    as a job's result, so both give the same shape."""
    return PredictResponse(
        request_id=request_id,
        text=result.text,
        confidence=result.confidence,
        latency_ms=latency_ms,
        boxes=[BoxOut(**vars(b)) for b in result.boxes],
        model=ModelRef(name=model.name, version=model.version, digest=getattr(model, "digest", "")),
    )
