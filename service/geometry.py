"""The sizes the OCR pipeline works at, shared by the decoder (``service.images``) and the model.

The pipeline (``service.models.ppocr``) first shrinks an image whose longer side is over ``PIPELINE_MAX_SIDE`` to that
side; its crops for the recogniser come from that image; the detector then shrinks it again to 960 px.
So pixels beyond ``PIPELINE_MAX_SIDE`` are never used, and the decoder need not produce them.

Long strips are the exception: squeezed to 960 px, a 4000x30 text line is 7 px tall (unreadable), and past
a ratio of 60 (detector) or 125 (pre-shrink) a side rounds to 0 px and the pipeline fails. The model
therefore *folds* a strip whose ratio is over ``FOLD_ASPECT`` into a page of rows (see
``service.models.ocr``), and such strips are decoded so that the page, not the strip, fits the pipeline.
"""

from __future__ import annotations

import math

PIPELINE_MAX_SIDE = 2000  # PP-OCR's max_side_len, the pipeline's max_side: set in service.models.ocr
DETECTOR_MAX_SIDE = 960  # the detector's limit_side_len with limit_type "max" (the default setting)
FOLD_ASPECT = 30.0  # above this ratio (long side / short side) a long image is read folded into rows
FOLD_MIN_LONG = DETECTOR_MAX_SIDE  # shorter images are not shrunk by the detector: never folded


def is_strip(width: int, height: int) -> bool:
    """Whether the detector would shrink the short side under 32 px (or to 0): read folded."""
    long, short = max(width, height), max(1, min(width, height))
    return long > FOLD_MIN_LONG and long / short > FOLD_ASPECT


def fold_gap(short: int) -> int:
    """Background between the rows of a folded strip: one row's height, at least 16 px."""
    return max(short, 16)


def folded_area(long: int, short: int) -> int:
    """Pixels of the page a ``long`` x ``short`` strip folds into (``service.models.folding``): its rows of
    ``short`` px, each with a gap of background, laid side by side (within a row's rounding)."""
    return long * (short + fold_gap(short))


def decode_scale(width: int, height: int, max_side: int = PIPELINE_MAX_SIDE) -> float:
    """How much to shrink an image at decode time (1.0: not at all), so that what the pipeline reads of it
    is unchanged: an image to ``max_side`` on its longer side; a strip so its folded page is within
    ``max_side`` squared, as decoded (a short side rounds up to a whole pixel and the gap between rows is at
    least 16 px whatever the scale, so a thin strip is shrunk more than its own area says)."""
    if width <= 0 or height <= 0:
        return 1.0
    if not is_strip(width, height):
        return min(1.0, max_side / max(width, height))
    long, short = max(width, height), min(width, height)
    budget = max_side * max_side

    def area(scale: float) -> int:
        return folded_area(max(1, math.ceil(long * scale)), max(1, math.ceil(short * scale)))

    high = min(1.0, max_side / math.sqrt(folded_area(long, short)))
    if area(high) <= budget:
        return high
    low = 0.0  # the area only grows with the scale: halve the interval until it is tight
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if area(middle) <= budget else (low, middle)
    return low
