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
from typing import Any

import numpy as np

from service import allocator
from service.models.folding import cuts, ink_columns

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
    """An onnxruntime session (rapidocr's wrapper) that gives freed heap pages back after each run
    (``service.allocator.trim``, about a millisecond): the recogniser runs once a line, each run with tensors
    of another size, and glibc otherwise keeps the freed pieces resident until the inference ends (a page of
    75 long lines peaked anywhere from 555 to 875 MiB; docs/benchmarks.md)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def __call__(self, batch: np.ndarray) -> Any:
        try:
            return self.session(batch)
        finally:
            allocator.trim()


class BoundedRecognizer:
    """A drop-in for rapidocr's ``TextRecognizer`` (called with a ``TextRecInput``, answering a
    ``TextRecOutput``) that never gives it a line wider than ``max_ratio`` times its height."""

    def __init__(self, inner: Any, max_ratio: float = MAX_RATIO) -> None:
        self.inner = inner
        self.max_ratio = max_ratio
        inner.session = Trimmed(inner.session)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, args: Any) -> Any:
        from rapidocr.ch_ppocr_rec.typings import TextRecInput, TextRecOutput

        lines = [args.img] if isinstance(args.img, np.ndarray) else list(args.img)
        split = [pieces_of(line, self.max_ratio) for line in lines]
        if args.return_word_box or all(len(p) == 1 for p in split):
            return self.inner(args)
        flat = [piece for line_pieces in split for piece, _ in line_pieces]
        out = self.inner(TextRecInput(img=flat, return_word_box=False))
        txts, scores = [], []
        at = 0
        for line_pieces in split:
            texts = out.txts[at : at + len(line_pieces)]
            weights = [piece.shape[1] for piece, _ in line_pieces]
            line_scores = [float(s) for s in out.scores[at : at + len(line_pieces)]]
            at += len(line_pieces)
            text = ""
            for (_, blank), piece_text in zip(line_pieces, texts, strict=True):
                text += piece_text + (" " if blank and piece_text else "")
            txts.append(text.strip() if len(line_pieces) > 1 else text)
            scores.append(sum(s * w for s, w in zip(line_scores, weights, strict=True)) / sum(weights))
        return TextRecOutput(
            imgs=lines,
            txts=tuple(txts),  # type: ignore[arg-type]  # rapidocr annotates a 1-tuple for any length
            scores=scores,
            word_results=tuple(None for _ in lines),  # type: ignore[arg-type]
            elapse=out.elapse,
            viser=out.viser,
        )
