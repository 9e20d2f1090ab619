"""A strip is decoded so that the page it folds into, as decoded, is within the pipeline's size."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from service.geometry import PIPELINE_MAX_SIDE, decode_scale, folded_area
from service.models import folding


@pytest.mark.parametrize("size", [(2, 5_499_000), (5_499_000, 2), (1, 9_000_000), (40, 2_000_000), (30, 40_000)])
def test_a_thin_strip_folds_into_a_page_the_pipeline_takes_whole(size: tuple[int, int]) -> None:
    # The gap between rows is at least 16 px whatever the scale: a 1-px strip's page is 17 times its area.
    scale = decode_scale(*size)
    decoded = tuple(max(1, math.ceil(side * scale)) for side in size)
    assert folded_area(max(decoded), min(decoded)) <= PIPELINE_MAX_SIDE**2
    strip = Image.new("RGB", decoded, "white")  # type: ignore[arg-type]
    page = folding.page(strip, folding.plan(strip))
    assert page.width * page.height <= 1.05 * PIPELINE_MAX_SIDE**2  # within a row's rounding


def test_a_strip_within_the_size_is_not_shrunk() -> None:
    assert decode_scale(30, 4000) == 1.0 and decode_scale(4000, 30) == 1.0
