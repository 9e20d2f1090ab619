"""The recogniser's memory, bounded whatever the page shows.

The recogniser reads each line the detector found at a height of 48 px and a width of 48 times the line's
aspect ratio, with no upper bound: its working set grows with that width (measured, docs/benchmarks.md:
about 176 MiB at 4,000 px, 731 MiB at 20,000). A page of long thin lines, or a folded strip of noise, makes
lines of ratio 400 and more, so the memory of one inference depended on the content, not only on the pixels
the budget counts. :class:`BoundedRecognizer` sits in front of the pipeline's recogniser and cuts a line
wider than ``MAX_RATIO`` times its height into pieces (at a gap between words where the line has one, as a
folded strip is cut: ``service.models.folding.cuts``), reads the pieces, and joins their text (a space where the cut
fell in a gap) and their scores (weighted by width). Lines within the ratio pass as they are.
"""

from __future__ import annotations

import math

import numpy as np

from service import allocator
from service.models.folding import cuts, ink_columns
from service.models.ppocr import Infer, Recognizer

# 48 x 80 = 3,840 px: the recogniser then needs about as much as the detector at 960 px (docs/benchmarks.md).
MAX_RATIO = 80.0


def pieces_of(line: np.ndarray, max_ratio: float = MAX_RATIO) -> list[tuple[np.ndarray, bool]]:
    """``line`` (rows x columns [x channels]) as pieces of at most ``max_ratio`` times its height, each with
    whether the cut after it fell in a gap between words; a line within the ratio is one piece."""
    height, width = line.shape[:2]
    target = max(1, math.floor(max(height, 1) * max_ratio))
    if width <= target:
        return [(line, False)]
    gray = line.mean(axis=2) if line.ndim == 3 else line
    return [(line[:, start:end], blank) for start, end, blank in cuts(ink_columns(gray), target)]


class Trimmed:
    """A network (``service.models.ppocr.Infer``) that gives freed heap pages back after each run
    (``service.allocator.trim``, about a millisecond): the recogniser runs once a line, each run with tensors
    of another size, and glibc otherwise keeps the freed pieces resident until the inference ends (a page of
    75 long lines peaked anywhere from 555 to 875 MiB; docs/benchmarks.md)."""

    def __init__(self, infer: Infer) -> None:
        self.infer = infer

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.infer(batch)
        finally:
            allocator.trim()


class BoundedRecognizer:
    """The recogniser (``service.models.ppocr.Recognizer``: line images in, (text, score) out) that never
    reads a line wider than ``max_ratio`` times its height: wider lines are read in pieces and joined."""

    def __init__(self, inner: Recognizer, max_ratio: float = MAX_RATIO) -> None:
        self.inner = inner
        self.max_ratio = max_ratio
        inner.infer = Trimmed(inner.infer)

    def __call__(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        split = [pieces_of(line, self.max_ratio) for line in lines]
        if all(len(p) == 1 for p in split):
            return self.inner(lines)
        read = self.inner([piece for line_pieces in split for piece, _ in line_pieces])
        out: list[tuple[str, float]] = []
        at = 0
        for line_pieces in split:
            got = read[at : at + len(line_pieces)]
            at += len(line_pieces)
            text = ""
            for (_, blank), (piece_text, _) in zip(line_pieces, got, strict=True):
                text += piece_text + (" " if blank and piece_text else "")
            weights = [piece.shape[1] for piece, _ in line_pieces]
            score = sum(s * w for (_, s), w in zip(got, weights, strict=True)) / sum(weights)
            out.append((text.strip() if len(line_pieces) > 1 else text, score))
        return out
