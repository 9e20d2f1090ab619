"""The sizes the OCR pipeline works at, shared by the decoder (``service.images``) and the model.

The pipeline (rapidocr) first shrinks an image whose longer side is over ``PIPELINE_MAX_SIDE`` to that
side; its crops for the recogniser come from that image; the detector then shrinks it again to 960 px.
So pixels beyond ``PIPELINE_MAX_SIDE`` are never used, and the decoder need not produce them.

Long strips are the exception: squeezed to 960 px, a 4000x30 text line is 7 px tall (unreadable), and past
a ratio of 60 (detector) or 125 (pre-shrink) a side rounds to 0 px and the pipeline fails. The model
therefore *folds* a strip whose ratio is over ``FOLD_ASPECT`` into a page of rows (see
``service.model``), and such strips are decoded so that the page, not the strip, fits the pipeline.
"""

from __future__ import annotations

import math

PIPELINE_MAX_SIDE = 2000  # rapidocr's Global.max_side_len: set explicitly in service.model
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


def decode_scale(width: int, height: int, max_side: int = PIPELINE_MAX_SIDE) -> float:
    """How much to shrink an image at decode time (1.0: not at all), so that what the pipeline reads of it
    is unchanged: an image to ``max_side`` on its longer side; a strip so its folded page is within it."""
    if width <= 0 or height <= 0:
        return 1.0
    if is_strip(width, height):
        long, short = max(width, height), min(width, height)
        page_area = long * (short + fold_gap(short))
        return min(1.0, max_side / math.sqrt(page_area))
    return min(1.0, max_side / max(width, height))
