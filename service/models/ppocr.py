"""PP-OCR on onnxruntime: the detector (DB), the optional 180-degree line classifier and the recogniser (CTC).

The ONNX files come from the rapidocr wheel (or a model dir); the pipeline around them is the service's own.
rapidocr's Python package parses an 85 KB model catalogue into OmegaConf objects twice when it is imported,
1.2 s of a cold start's 2.7 s on two cores (docs/benchmarks.md, "Cold start"); the service never imports it.
What it computes is PP-OCR's published pipeline, with the settings ``service.models.ocr`` gives it, and
``tests/service/test_ppocr.py`` holds it to rapidocr's answers (same text, boxes within a pixel) on a set of
pages, lines and strips.

The steps, for one BGR image:

1. the image is brought within ``max_side`` (and up to ``min_side``) at sides that are multiples of 32;
2. a short or very wide image is padded above and below so the detector sees text with room around it;
3. the detector's probability map, thresholded and dilated, gives contours; each becomes its minimum-area
   rectangle, is scored on the map, grown by ``unclip_ratio`` (a polygon offset) and rounded to the image;
4. boxes are sorted in reading order and each is cut out upright (a perspective warp; tall cuts turned);
5. the classifier, when on, turns lines it reads as upside down; the recogniser reads each line at a height
   of 48 px and decodes the best path (CTC);
6. empty lines and lines scoring under ``text_score`` are dropped; boxes go back to the image's frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pyclipper

from service.errors import ModelLoadError

Quad = np.ndarray  # 4 x 2 float32 corners: top-left, top-right, bottom-right, bottom-left
Read = tuple[Quad, str, float]
Infer = Callable[[np.ndarray], np.ndarray]  # one network: a batch in, its first output out
Recognise = Callable[[list[np.ndarray]], list[tuple[str, float]]]

REC_HEIGHT = 48
REC_MIN_RATIO = 320 / 48  # lines narrower than this are padded to it
CLS_SHAPE = (48, 192)
CLS_LABELS = ("0", "180")
SORT_ROW_PX = 10  # boxes whose top-left corners lie within this many pixels vertically share a row


@dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline is tuned with; the defaults are PP-OCR's, ``service.models.ocr`` sets the rest."""

    threads: int = 1
    det_limit_type: str = "max"  # "max": shrink only; "min": grow the short side to the limit
    det_limit_side_len: int = 960
    max_side: int = 2000
    min_side: int = 30
    pad_min_height: int = 30
    pad_width_ratio: float = 8.0
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    min_box_side: int = 3
    angle_cls: bool = False
    cls_thresh: float = 0.9
    cls_batch: int = 6
    rec_batch: int = 1
    text_score: float = 0.5


def infer(sess: ort.InferenceSession) -> Infer:
    """The session as a function of its one input."""
    name = sess.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        out: Any = sess.run(None, {name: batch})
        return np.asarray(out[0])

    return run


def characters(rec: ort.InferenceSession, keys: Path | None, path: Path) -> list[str]:
    """The recogniser's alphabet: ``keys`` (one character a line) when given, else the list the ONNX file
    carries in its metadata; a model with neither is refused (nothing is ever downloaded)."""
    if keys is not None:
        with keys.open("rb") as lines:
            return [line.decode("utf-8").strip("\n").strip("\r\n") for line in lines]
    meta = rec.get_modelmeta().custom_metadata_map
    if "character" not in meta:
        raise ModelLoadError(f"{path} has no embedded character list and keys.txt is missing beside it")
    return meta["character"].splitlines()


# -- geometry -----------------------------------------------------------------------------------------


def _to_multiple_of_32(img: np.ndarray, ratio: float) -> np.ndarray | None:
    h, w = img.shape[:2]
    rh, rw = round(int(h * ratio) / 32) * 32, round(int(w * ratio) / 32) * 32
    if rh <= 0 or rw <= 0:
        return None
    return cv2.resize(img, (rw, rh))


def within_bounds(img: np.ndarray, min_side: int, max_side: int) -> np.ndarray | None:
    """The image with its longer side at most ``max_side`` and its shorter at least ``min_side`` (sides
    rounded to multiples of 32 when it is resized); None when it would vanish."""
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        resized = _to_multiple_of_32(img, max_side / max(h, w))
        if resized is None:
            return None
        img = resized
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        return _to_multiple_of_32(img, min_side / min(h, w))
    return img


def vertical_padding(img: np.ndarray, min_height: int, width_ratio: float) -> int:
    """Rows of black to add above and below a short or very wide image (0 for the others)."""
    h, w = img.shape[:2]
    if h > min_height and w / h <= width_ratio:
        return 0
    return int(abs(max(int(w / width_ratio), min_height) * 2 - h) / 2)


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle around ``points``: its corners (top-left, top-right, bottom-right,
    bottom-left) and its shorter side."""
    rect = cv2.minAreaRect(points)
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = corners[:2] if corners[1][1] > corners[0][1] else corners[1::-1]
    right = corners[2:] if corners[3][1] > corners[2][1] else corners[:1:-1]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32), min(rect[1])


def _score(prob: np.ndarray, box: np.ndarray) -> float:
    """The mean of the probability map inside ``box``."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (box - np.array([x0, y0], dtype=box.dtype)).astype(np.int32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2), 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """``box`` grown outwards by area x ratio / perimeter (rounded joins), as DB's labels were shrunk."""
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2
    perimeter = float(np.sum(np.hypot(np.roll(x, -1) - x, np.roll(y, -1) - y)))
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(area * ratio / perimeter), dtype=np.float32).reshape(-1, 1, 2)


def _clockwise(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left, on whole pixels inside the image."""
    by_x = box[np.argsort(box[:, 0], kind="stable")]
    tl, bl = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    tr, br = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    out = np.array([tl, tr, br, bl], dtype=np.float32)
    out[:, 0] = np.clip(out[:, 0], 0, width - 1).astype(np.int32)
    out[:, 1] = np.clip(out[:, 1], 0, height - 1).astype(np.int32)
    return out


def reading_sorted(boxes: np.ndarray) -> np.ndarray:
    """Boxes top to bottom by their top-left corner; a corner within ``SORT_ROW_PX`` of the previous one
    stays in its row; rows left to right."""
    if len(boxes) == 0:
        return boxes
    by_y = boxes[np.argsort(boxes[:, 0, 1], kind="stable")]
    rows = np.concatenate([[0], np.cumsum(np.diff(by_y[:, 0, 1]) >= SORT_ROW_PX)])
    return by_y[np.lexsort((by_y[:, 0, 0], rows))]


def crop(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The line inside ``quad``, warped upright; a cut at least 1.5 times taller than wide is turned."""
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    line = cv2.warpPerspective(img, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(line) if line.shape[0] / line.shape[1] >= 1.5 else line


# -- the three networks ---------------------------------------------------------------------------------


class Detector:
    """DB text detection: boxes (N x 4 x 2, the image's pixels) in reading order."""

    def __init__(self, infer: Infer, settings: PipelineSettings) -> None:
        self.infer, self.settings = infer, settings

    def _input(self, img: np.ndarray) -> np.ndarray | None:
        s = self.settings
        h, w = img.shape[:2]
        if s.det_limit_type == "max":
            ratio = s.det_limit_side_len / max(h, w) if max(h, w) > s.det_limit_side_len else 1.0
        else:
            ratio = s.det_limit_side_len / min(h, w) if min(h, w) < s.det_limit_side_len else 1.0
        resized = _to_multiple_of_32(img, ratio)
        if resized is None:
            return None
        scaled = resized.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
        return np.ascontiguousarray(scaled.transpose(2, 0, 1)[np.newaxis])

    def __call__(self, img: np.ndarray) -> np.ndarray:
        s = self.settings
        batch = self._input(img)
        if batch is None:
            return np.zeros((0, 4, 2), dtype=np.float32)
        prob = self.infer(batch)[0, 0]
        mask = cv2.dilate((prob > s.thresh).astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
        contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        map_h, map_w = prob.shape
        h, w = img.shape[:2]
        boxes = []
        for contour in contours[: s.max_candidates]:
            points, side = _mini_box(contour)
            if side < s.min_box_side or _score(prob, points) < s.box_thresh:
                continue
            grown, side = _mini_box(_unclip(points, s.unclip_ratio))
            if side < s.min_box_side + 2:
                continue
            grown[:, 0] = np.clip(np.round(grown[:, 0] / map_w * w), 0, w)
            grown[:, 1] = np.clip(np.round(grown[:, 1] / map_h * h), 0, h)
            box = _clockwise(grown.astype(np.int32).astype(np.float32), w, h)
            if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
                continue
            boxes.append(box)
        if not boxes:
            return np.zeros((0, 4, 2), dtype=np.float32)
        return reading_sorted(np.array(boxes, dtype=np.float32))


def _line_input(line: np.ndarray, height: int, width: int) -> np.ndarray:
    """One line resized to ``height`` (its width kept in proportion, at most ``width``), scaled to [-1, 1]
    and padded with zeros on the right to ``width``."""
    h, w = line.shape[:2]
    resized_w = min(width, math.ceil(height * (w / float(h))))
    resized = cv2.resize(line, (resized_w, height)).astype(np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = (resized - 0.5) / 0.5
    return out


def _by_ratio(lines: Sequence[np.ndarray]) -> np.ndarray:
    return np.argsort(np.array([line.shape[1] / float(line.shape[0]) for line in lines]))


class Classifier:
    """The 180-degree line classifier: lines it reads as upside down (above ``cls_thresh``) are turned."""

    def __init__(self, infer: Infer, settings: PipelineSettings) -> None:
        self.infer, self.settings = infer, settings

    def __call__(self, lines: list[np.ndarray]) -> list[np.ndarray]:
        s = self.settings
        out = list(lines)
        order = _by_ratio(lines)
        for start in range(0, len(lines), s.cls_batch):
            chunk = order[start : start + s.cls_batch]
            batch = np.stack([_line_input(lines[i], *CLS_SHAPE) for i in chunk])
            probs = self.infer(batch)
            for i, p in zip(chunk, probs, strict=True):
                label = int(np.argmax(p))
                if CLS_LABELS[label] == "180" and float(p[label]) > s.cls_thresh:
                    out[i] = cv2.rotate(out[i], cv2.ROTATE_180)
        return out


class Recognizer:
    """CRNN recognition with best-path CTC decoding: (text, mean character score) per line. Lines are read
    in batches of ``rec_batch``, narrowest first; each batch at the width of its widest line."""

    def __init__(self, infer: Infer, alphabet: list[str], settings: PipelineSettings) -> None:
        self.infer = infer
        self.alphabet = ["", *alphabet, " "]  # index 0 is CTC's blank
        self.batch = max(1, settings.rec_batch)

    def __call__(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = [("", 0.0)] * len(lines)
        order = _by_ratio(lines)
        for start in range(0, len(lines), self.batch):
            chunk = order[start : start + self.batch]
            ratio = max(REC_MIN_RATIO, *(lines[i].shape[1] / lines[i].shape[0] for i in chunk))
            width = int(REC_HEIGHT * ratio)
            batch = np.stack([_line_input(lines[i], REC_HEIGHT, width) for i in chunk])
            probs = self.infer(batch)
            for i, p in zip(chunk, probs, strict=True):
                results[i] = self.decode(p)
        return results

    def decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Best path: the top class per step, repeats merged, blanks dropped; the score is the mean of the
        kept steps' probabilities (each rounded to 5 places, as PP-OCR reports them)."""
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        if not keep.any():
            return "", 0.0
        conf = [round(c, 5) for c in probs.max(axis=1)[keep].tolist()]
        return "".join(self.alphabet[i] for i in best[keep]), float(np.mean(conf).round(5))


# -- the pipeline ---------------------------------------------------------------------------------------


class Pipeline:
    """Detection, optional classification and recognition of one image. ``recognise`` reads a list of line
    images (``service.models.recognition`` puts its bound in front of the recogniser)."""

    def __init__(
        self, detector: Detector, recognise: Recognise, classifier: Classifier | None, settings: PipelineSettings
    ) -> None:
        self.detector, self.recognise, self.classifier, self.settings = detector, recognise, classifier, settings

    def __call__(self, rgb: np.ndarray) -> list[Read]:
        """Quads (in the frame of ``rgb``), texts and scores of the lines read in an RGB image."""
        s = self.settings
        ori_h, ori_w = rgb.shape[:2]
        img = within_bounds(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), s.min_side, s.max_side)
        if img is None:
            return []
        ratio_h, ratio_w = ori_h / img.shape[0], ori_w / img.shape[1]
        pad = vertical_padding(img, s.pad_min_height, s.pad_width_ratio)
        if pad:
            img = cv2.copyMakeBorder(img, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        quads = self.detector(img)
        if len(quads) == 0:
            return []
        lines = [crop(img, q) for q in quads]
        if self.classifier is not None:
            lines = self.classifier(lines)
        texts = self.recognise(lines)
        quads[:, :, 1] -= pad
        quads[:, :, 0] *= ratio_w
        quads[:, :, 1] *= ratio_h
        quads = np.maximum(quads, 0)
        quads[..., 0] = np.minimum(quads[..., 0], ori_w)
        quads[..., 1] = np.minimum(quads[..., 1], ori_h)
        return [
            (quad, text, score)
            for quad, (text, score) in zip(quads, texts, strict=True)
            if text.strip() and score >= s.text_score
        ]
