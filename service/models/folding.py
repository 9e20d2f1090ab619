"""Reading long strips: fold a strip into rows of a page the detector can read, and map boxes back.

A 4000x30 text line shrunk to the detector's 960 px is 7 px tall, and past a ratio of 60 a side rounds to
0 px and the pipeline fails (``service.geometry``). Folded, the same line is a page of ``n`` rows of about
``long / n`` px each, stacked with a gap of background between them, and keeps its full resolution. Cuts
fall on blank columns (the gaps between words) when the strip has them, so no word is cut in two; boxes
found on the page are moved back to where their row lies in the strip, and a row's boxes are merged back
into one line of text. A tall strip is turned a quarter (counter-clockwise, as text running top to bottom
on a spine reads upright) and folded the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.geometry import fold_gap

INK_LEVEL = 48  # a column whose pixels all lie within this of the background level is blank
SEARCH_FROM = 0.6  # a cut is looked for in the last 40% of each row's length


@dataclass(frozen=True)
class Fold:
    size: tuple[int, int]  # the strip as given
    vertical: bool  # a tall strip, turned to a wide one before folding
    short: int  # the wide strip's height
    gap: int  # background between rows (and around them)
    segments: tuple[tuple[int, int], ...]  # (start, end) of each row along the wide strip
    background: tuple[int, int, int]

    @property
    def pitch(self) -> int:
        return self.short + self.gap

    def row_top(self, row: int) -> int:
        return self.gap // 2 + row * self.pitch


def _wide(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_90) if image.height > image.width else image


def _runs(blank: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True."""
    padded = np.concatenate(([False], blank, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plan(image: Image.Image) -> Fold:
    """Where to cut a strip (RGB) into rows: at the widest blank run near each row's end, else hard."""
    wide = _wide(image)
    width, short = wide.size
    rgb = np.asarray(wide.convert("RGB"))
    background = tuple(int(v) for v in np.median(rgb.reshape(-1, 3), axis=0))
    gap = fold_gap(short)
    rows = max(2, round(math.sqrt(width / (short + gap))))
    segments = [
        (start, end) for start, end, _ in cuts(ink_columns(np.asarray(wide.convert("L"))), math.ceil(width / rows))
    ]
    return Fold(
        size=image.size,
        vertical=image.height > image.width,
        short=short,
        gap=gap,
        segments=tuple(segments),
        background=background,  # type: ignore[arg-type]
    )


def ink_columns(gray: np.ndarray) -> np.ndarray:
    """For each column of a gray image (rows x columns), whether any of its pixels is ink: further than
    ``INK_LEVEL`` from the image's median level (its background)."""
    level = gray.astype(np.int16)
    return np.asarray((np.abs(level - int(np.median(level))) > INK_LEVEL).any(axis=0))


def cuts(ink: np.ndarray, target: int) -> list[tuple[int, int, bool]]:
    """Pieces of at most ``target`` columns, (start, end, blank): each piece but the last ends in the middle
    of the widest blank run (a gap between words) of its last 40%, ``blank`` then True; where there is none,
    it is cut hard at ``target`` (``blank`` False)."""
    width = len(ink)
    pieces = []
    start = 0
    while width - start > target:
        low, high = start + int(target * SEARCH_FROM), start + target
        runs = _runs(~ink[low:high])
        if runs:
            run_start, run_end = max(runs, key=lambda r: (r[1] - r[0], r[1]))
            end, blank = max(low + (run_start + run_end) // 2, start + 1), True
        else:
            end, blank = high, False
        pieces.append((start, end, blank))
        start = end
    pieces.append((start, width, False))
    return pieces


def page(image: Image.Image, fold: Fold) -> Image.Image:
    """The folded page: each segment a row, on the strip's background colour."""
    wide = _wide(image).convert("RGB")
    longest = max(end - start for start, end in fold.segments)
    size = (longest + fold.gap, len(fold.segments) * fold.pitch)
    out = Image.new("RGB", size, fold.background)
    for row, (start, end) in enumerate(fold.segments):
        out.paste(wide.crop((start, 0, end, fold.short)), (fold.gap // 2, fold.row_top(row)))
    return out


def unfold(box: tuple[float, float, float, float], fold: Fold) -> tuple[float, float, float, float]:
    """A box on the page, in the wide strip's frame (before any turn back)."""
    x1, y1, x2, y2 = box
    row = min(len(fold.segments) - 1, max(0, int(((y1 + y2) / 2) // fold.pitch)))
    start, end = fold.segments[row]
    top, left = fold.row_top(row), fold.gap // 2 - start

    def clip(v: float, lo: float, hi: float) -> float:
        return min(hi, max(lo, v))

    return (
        clip(x1 - left, start, end),
        clip(y1 - top, 0, fold.short),
        clip(x2 - left, start, end),
        clip(y2 - top, 0, fold.short),
    )


def turn_back(box: tuple[float, float, float, float], fold: Fold) -> tuple[float, float, float, float]:
    """A box in the wide strip's frame, in the frame of the strip as given."""
    if not fold.vertical:
        return box
    u1, v1, u2, v2 = box
    width = fold.size[0]  # the tall strip's width: the wide strip's height
    return (width - v2, u1, width - v1, u2)
