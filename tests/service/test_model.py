from pathlib import Path

import pytest
from PIL import Image

from harness.provisioning import samples
from service.errors import ModelLoadError
from service.models.ocr import Box, ModelFiles, OcrModel, reading_order
from tests.service import corpus


def box(x1: int, y1: int, x2: int, y2: int, text: str) -> Box:
    return Box(x1, y1, x2, y2, text, 0.9)


def test_reading_order_rows_then_columns() -> None:
    boxes = [box(300, 12, 400, 40, "right"), box(10, 100, 90, 130, "second"), box(10, 10, 100, 42, "left")]
    assert [b.text for b in reading_order(boxes)] == ["left", "right", "second"]


def test_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "det.onnx").write_bytes(b"x")
    (tmp_path / "cls.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"rec\.onnx"):
        ModelFiles.from_dir(tmp_path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    for name in ("det.onnx", "rec.onnx", "cls.onnx"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "cls.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"cls\.onnx"):
        ModelFiles.from_dir(tmp_path)


@pytest.fixture(scope="module")
def model() -> OcrModel:
    m = OcrModel.load()
    m.warm_up()
    return m


def test_model_reads_known_text(model: OcrModel) -> None:
    sample = samples.text_line("Payment received 42")
    result = model.read(sample.image)
    assert result.text == "Payment received 42"
    assert 0.5 < result.confidence <= 1


def test_model_version_names_files(model: OcrModel) -> None:
    assert model.ready
    assert model.info.version.count("+") == 1 and len(model.info.version.split("+")[1]) == 12


def test_angle_classifier_reads_upside_down_text() -> None:
    from PIL import Image

    sample = samples.text_line("Upside down invoice 42")
    flipped = sample.image.transpose(Image.Transpose.ROTATE_180)
    with_cls = OcrModel.load(angle_cls=True)
    with_cls.warm_up()
    assert with_cls.read(flipped).text == "Upside down invoice 42"


def test_without_angle_classifier_upside_down_text_is_not_read(model: OcrModel) -> None:
    from PIL import Image

    flipped = samples.text_line("Upside down invoice 42").image.transpose(Image.Transpose.ROTATE_180)
    assert model.read(flipped).text != "Upside down invoice 42"


# -- long strips: shapes the detector's resize cannot take must still be read ------------------------


@pytest.mark.parametrize("size", [(2001, 15), (15, 2001), (10000, 1), (1, 10000), (4000, 8)])
def test_blank_strips_of_any_shape_read_as_nothing(model: OcrModel, size: tuple[int, int]) -> None:
    result = model.read(Image.new("RGB", size, "white"))
    assert result.text == "" and result.boxes == []


def test_a_long_text_line_is_read(model: OcrModel) -> None:
    line = corpus.long_line(4000, 30).convert("RGB")
    result = model.read(line)
    assert result.text.startswith(corpus.long_line_text()), result.text
    for box in result.boxes:
        assert 0 <= box.x1 < box.x2 <= 4000 and 0 <= box.y1 < box.y2 <= 30


def test_a_tall_text_column_is_read(model: OcrModel) -> None:
    # The same line turned 90 degrees: a 30x4000 strip; the detector needs it as much as the wide one.
    column = corpus.long_line(4000, 30).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    result = model.read(column)
    assert result.boxes and all(0 <= b.x1 < b.x2 <= 30 and 0 <= b.y1 < b.y2 <= 4000 for b in result.boxes)
