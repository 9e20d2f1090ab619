"""The recogniser's input width is bounded whatever the page shows (``service.models.recognition``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from service.models.ocr import OcrModel
from service.models.recognition import MAX_RATIO, BoundedRecognizer, pieces_of

WORDS = "Invoice total amount due 2024 shipping address north street reference paid thank you"


def line_image(text: str, *, height: int, width: int) -> np.ndarray:
    font = ImageFont.load_default(size=int(height * 0.75))
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((8, height // 2), text, fill="black", font=font, anchor="lm")
    return np.asarray(image)


def test_a_line_within_the_ratio_is_one_piece() -> None:
    line = line_image("Invoice 42", height=30, width=30 * int(MAX_RATIO))
    assert [piece.shape for piece, _ in pieces_of(line)] == [line.shape]


def test_a_long_line_is_cut_at_gaps_between_words_into_pieces_within_the_ratio() -> None:
    line = line_image(WORDS * 3, height=20, width=9000)
    pieces = pieces_of(line)
    assert len(pieces) >= 6
    assert all(piece.shape[1] <= 20 * MAX_RATIO for piece, _ in pieces)
    assert sum(piece.shape[1] for piece, _ in pieces) == 9000  # nothing lost, nothing read twice
    assert all(blank for _, blank in pieces[:-1])  # every cut fell between words
    for piece, _ in pieces[:-1]:  # ... so no piece ends in ink
        assert (np.abs(piece[:, -1].astype(int) - 255) <= 48).all()


def test_a_line_without_gaps_is_cut_hard() -> None:
    rule = np.full((6, 3000), 255, dtype=np.uint8)
    rule[2:4] = 0  # a rule across the line: ink in every column
    pieces = pieces_of(rule)
    assert [p.shape[1] for p, _ in pieces] == [480] * 6 + [120]
    assert not any(blank for _, blank in pieces)


@pytest.fixture(scope="module")
def model() -> OcrModel:
    m = OcrModel.load(threads=1)
    m.warm_up()
    return m


class Widths:
    """Records the width of every input the recogniser's network really runs on."""

    def __init__(self, infer: Any) -> None:
        self.infer, self.seen = infer, []

    def __call__(self, batch: np.ndarray) -> Any:
        self.seen.append(batch.shape[-1])
        return self.infer(batch)


@pytest.mark.parametrize("bound", [12.0, MAX_RATIO])
def test_the_recogniser_never_runs_wider_than_its_bound_and_a_cut_line_is_read_whole(
    model: OcrModel, bound: float
) -> None:
    # One line of ratio ~30 as cropped: read in 3 pieces under a bound of 12, whole under the default.
    page = Image.new("RGB", (1200, 200), "white")
    text = "Invoice total amount due 2024 shipping address north street 42"
    ImageDraw.Draw(page).text((10, 100), text, fill="black", font=ImageFont.load_default(size=26), anchor="lm")
    rec = model.recognizer
    assert isinstance(rec, BoundedRecognizer) and rec.max_ratio == MAX_RATIO
    widths = Widths(rec.inner.infer)
    rec.inner.infer, rec.max_ratio = widths, bound
    try:
        result = model.read(page)
    finally:
        rec.inner.infer, rec.max_ratio = widths.infer, MAX_RATIO
    assert result.text == text
    assert max(widths.seen) <= 48 * bound, widths.seen
    assert len(widths.seen) == (1 if bound == MAX_RATIO else 3), widths.seen
