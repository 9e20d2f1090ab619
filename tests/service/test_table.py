"""The table model in-process (``service.models.table``): structure, text, frames and the empty answer, on
seeded tables whose structure and text are known."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from harness.provisioning import samples
from service.images import SOURCE_SIZE
from service.models import load
from service.models.table import EMPTY_TABLE, TableModel, build_html
from service.settings import load_settings


@pytest.fixture(scope="module")
def model() -> Iterator[TableModel]:
    loaded = load(load_settings(model="table", intra_op_threads=1))
    assert isinstance(loaded, TableModel)
    loaded.warm_up()
    yield loaded


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_ruled_table_reads_exactly(model: TableModel, seed: int) -> None:
    sample = samples.table(seed, rows=4, columns=3 + seed % 2)
    result = model.predict(sample.image)
    assert result.html == sample.html
    assert (result.rows, result.columns) == (sample.rows, sample.columns)
    assert [(c.row, c.col, c.rowspan, c.colspan, c.text) for c in result.cells] == [
        (c.row, c.col, c.rowspan, c.colspan, c.text) for c in sample.cells
    ]
    width, height = sample.image.size
    for cell in result.cells:
        assert 0 <= cell.x1 < cell.x2 <= width and 0 <= cell.y1 < cell.y2 <= height, cell
        assert 0.5 <= cell.conf <= 1, cell


def test_a_merged_header_cell_keeps_its_span(model: TableModel) -> None:
    sample = samples.table(4, rows=4, columns=4, merged=True)
    result = model.predict(sample.image)
    assert result.html == sample.html
    assert result.cells[0].colspan == 2 and result.cells[1].col == 2


def test_boxes_are_in_the_frame_of_the_image_sent(model: TableModel) -> None:
    # The same pixels, once as they are and once marked as decoded at half the size sent: every box doubles.
    sample = samples.table(1, rows=4, columns=4, font_size=28)
    half = sample.image.resize((sample.image.width // 2, sample.image.height // 2), Image.Resampling.LANCZOS)
    own = model.predict(half.copy())
    half.info[SOURCE_SIZE] = (half.width * 2, half.height * 2)  # as the decoder marks an image it decoded smaller
    sent = model.predict(half)
    assert [c.text for c in sent.cells] == [c.text for c in own.cells] and len(own.cells) >= 12
    for a, b in zip(own.cells, sent.cells, strict=True):
        for small, large in ((a.x1, b.x1), (a.y1, b.y1), (a.x2, b.x2), (a.y2, b.y2)):
            assert abs(2 * small - large) <= 2, (a, b)


def test_an_image_with_no_text_is_an_empty_table(model: TableModel) -> None:
    result = model.predict(Image.new("RGB", (640, 400), "white"))
    assert (result.html, result.rows, result.columns, result.cells) == (EMPTY_TABLE, 0, 0, [])


def test_cell_text_is_escaped_in_the_html() -> None:
    tokens = ["<html>", "<body>", "<table>", "<tr>", "<td></td>", "<td", ' colspan="2"', ">", "</td>", "</tr>",
              "</table>", "</body>", "</html>"]  # fmt: skip
    assert build_html(tokens, ["a<b", 'R&D "x"']) == (
        '<table><tr><td>a&lt;b</td><td colspan="2">R&amp;D &quot;x&quot;</td></tr></table>'
    )


def test_the_identity_covers_both_models(model: TableModel) -> None:
    assert model.info.name == "table"
    assert model.info.version.startswith("0.3.0+") and model.info.digest.startswith(model.info.version[6:])
    assert model.info.digest != model.ocr.info.digest
